"""QEMU 7.2's migration capabilities and parameters, as amber lists them.

Shared by the tests of query-migrate-capabilities and -parameters: the
capability names in QEMU's order then amber's own, and the parameters
amber lists for QEMU's clients with the values QEMU 7.2 starts with.
"""

QEMU_CAPS = ["xbzrle", "rdma-pin-all", "auto-converge", "zero-blocks", "compress", "events",
             "postcopy-ram", "x-colo", "release-ram", "block", "return-path",
             "pause-before-switchover", "multifd", "dirty-bitmaps", "postcopy-blocktime",
             "late-block-activate", "x-ignore-shared", "validate-uuid",
             "background-snapshot", "zero-copy-send", "postcopy-preempt"]
AMBER_CAPS = ["mapped-ram", "x-zero-copy-restore", "x-checksum"]
ALL_CAPS = QEMU_CAPS + AMBER_CAPS
# Of disks, which amber's machine has none of: either state is accepted.
VACUOUS_CAPS = ["zero-blocks", "block", "dirty-bitmaps", "late-block-activate"]
MISSING_CAPS = ["xbzrle", "rdma-pin-all", "auto-converge", "compress", "x-colo",
                "release-ram", "return-path", "pause-before-switchover", "multifd",
                "x-ignore-shared", "validate-uuid", "zero-copy-send"]

# amber's own parameters at their defaults (max-bandwidth: amber's 0, see
# qapi/migration.json), then QEMU's others at QEMU 7.2's defaults.
AMBER_PARAMS = {"max-bandwidth": 0, "downtime-limit": 300,
                "x-background-snapshot-pool-size": 0,
                "x-background-snapshot-chunk-size": 2 << 20, "direct-io": False,
                "max-postcopy-bandwidth": 0, "multifd-channels": 2}
# Kept and reported whatever their value (no network card, no disk).
VACUOUS_PARAMS = {"announce-initial": 50, "announce-max": 550, "announce-rounds": 5,
                  "announce-step": 100, "block-incremental": False}
# Accepted only at these values.
NEUTRAL_PARAMS = {"compress-level": 1, "compress-threads": 8, "compress-wait-thread": True,
                  "decompress-threads": 2, "throttle-trigger-threshold": 50,
                  "cpu-throttle-initial": 20, "cpu-throttle-increment": 10,
                  "cpu-throttle-tailslow": False, "tls-creds": "", "tls-hostname": "",
                  "tls-authz": "", "x-checkpoint-delay": 20000,
                  "xbzrle-cache-size": 64 << 20, "max-cpu-throttle": 99,
                  "multifd-compression": "none", "multifd-zlib-level": 1,
                  "multifd-zstd-level": 1}
DEFAULT_PARAMS = dict(AMBER_PARAMS, **VACUOUS_PARAMS, **NEUTRAL_PARAMS)


def caps(on=()):
    """query-migrate-capabilities' reply with the capabilities `on` set."""
    return [{"capability": n, "state": n in on} for n in ALL_CAPS]


def caps_hmp(on=()):
    """`info migrate_capabilities` with the capabilities `on` set."""
    return "".join("%s: %s\r\n" % (n, "on" if n in on else "off") for n in ALL_CAPS)


# `info migrate_parameters` after amber's own: QEMU's others, at their defaults.
COMPAT_HMP = ("announce-initial: 50 ms\r\nannounce-max: 550 ms\r\nannounce-rounds: 5\r\n"
              "announce-step: 100 ms\r\nblock-incremental: off\r\ncompress-level: 1\r\n"
              "compress-threads: 8\r\ncompress-wait-thread: on\r\ndecompress-threads: 2\r\n"
              "throttle-trigger-threshold: 50\r\ncpu-throttle-initial: 20\r\n"
              "cpu-throttle-increment: 10\r\ncpu-throttle-tailslow: off\r\n"
              "max-cpu-throttle: 99\r\ntls-creds: ''\r\ntls-hostname: ''\r\ntls-authz: ''\r\n"
              "x-checkpoint-delay: 20000 ms\r\nxbzrle-cache-size: 67108864 bytes\r\n"
              "multifd-compression: none\r\nmultifd-zlib-level: 1\r\nmultifd-zstd-level: 1\r\n")
COMPAT_HMP_NAMES = [line.split(":")[0] for line in COMPAT_HMP.split("\r\n") if line]
