/* Links the static library into an executable, so that any symbol it leaves undefined (an
 * allocator, an embassy time driver, ...) fails the build; libc supplies only mem*. Run by .ci/run,
 * which also prints the RAM figure below. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

size_t subnodesync_nostd_check(uint64_t seed);
struct embassy_check {
    size_t written;
    size_t ram;
    size_t run_future;
};
struct embassy_check subnodesync_nostd_embassy_check(uint64_t seed);

int main(void) {
    size_t sent = subnodesync_nostd_check(7);
    struct embassy_check embassy = subnodesync_nostd_embassy_check(7);
    printf("no_std node transmitted %zu bytes\n", sent);
    printf("no_std embassy node wrote %zu bytes before the engine's stop ended run\n", embassy.written);
    printf("embassy node RAM: %zu bytes (node, resources and run future; the run future alone %zu)\n",
           embassy.ram, embassy.run_future);
    return sent > 0 && embassy.written > 0 ? 0 : 1;
}
