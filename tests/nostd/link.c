/* Links the static library into an executable, so that any symbol it leaves undefined (an
 * allocator, an embassy time driver, ...) fails the build; libc supplies only mem*. Run by .ci/run. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

size_t subnodesync_nostd_check(uint64_t seed);

int main(void) {
    size_t sent = subnodesync_nostd_check(7);
    printf("no_std node transmitted %zu bytes\n", sent);
    return sent > 0 ? 0 : 1;
}
