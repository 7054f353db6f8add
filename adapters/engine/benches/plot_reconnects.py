"""Plots the reconnect timeline the fleet_e2e bench writes after its broker restart.

    python3 adapters/engine/benches/plot_reconnects.py target/fleet_e2e_reconnects.csv \
        adapters/engine/benches/fleet_e2e_reconnects.png

Needs matplotlib (pip install matplotlib). The PNG is committed, so nobody else needs it.
"""

import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src: str, dst: str) -> None:
    with open(src, newline="") as f:
        rows = list(csv.DictReader(f))
    t = [int(r["second_after_restart"]) for r in rows]
    reconnects = [int(r["reconnects"]) for r in rows]
    registrations = [int(r["registrations"]) for r in rows]
    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    ax.bar(t, reconnects, width=0.8, label="reconnects (CONNACKs at the nodes)", color="#4477aa")
    ax.plot(t, registrations, marker="o", ms=3, color="#cc6677", label="registrations ingested by the engine")
    ax.set_xlabel("seconds after the broker restart")
    ax.set_ylabel("per second")
    ax.set_title(f"{sum(reconnects):,} nodes reconnecting after a mosquitto restart")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(dst)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
