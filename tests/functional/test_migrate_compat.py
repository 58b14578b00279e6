"""The migration replies a QEMU client reads, under -machine none (any host).

query-migrate-capabilities lists QEMU 7.2's capabilities in its order, then
amber's own; query-migrate-parameters has every member QEMU 7.2 has, at
QEMU's defaults (max-bandwidth excepted, see qapi/migration.json), plus
amber's.  QEMU's features amber lacks are accepted at the value that
changes nothing and refused otherwise, naming the parameter and the value;
those of hardware amber's machine has not (announce-* of network cards,
block-incremental and the block capabilities of disks) keep any valid
value.  The same through HMP.  Where Debian's QEMU 7.2 is installed, its
own replies are compared member by member.
"""
import json
import shutil
import subprocess

import pytest

from migrate_compat import (ALL_CAPS, AMBER_CAPS, AMBER_PARAMS, COMPAT_HMP,
                            DEFAULT_PARAMS, MISSING_CAPS, NEUTRAL_PARAMS, QEMU_CAPS,
                            VACUOUS_CAPS, caps, caps_hmp)
import vm as vmmod

QEMU = shutil.which("qemu-system-x86_64")


def qmp_session(argv, requests):
    """Run argv with QMP on stdio; the replies to requests, in order."""
    lines = [{"execute": "qmp_capabilities"}] + requests + [{"execute": "quit"}]
    r = subprocess.run(argv + ["-nodefaults", "-display", "none", "-qmp", "stdio"],
                       input="".join(json.dumps(x) + "\n" for x in lines),
                       capture_output=True, text=True, timeout=60)
    vmmod.no_sanitizer_report(r.stderr)
    out = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    replies = [x for x in out if "return" in x or "error" in x]
    assert len(replies) == len(lines), r.stdout + r.stderr
    return replies[1:-1]


def amber(amber_bin, *requests):
    return qmp_session([amber_bin, "-machine", "none"], list(requests))


def ex(cmd, args=None):
    return {"execute": cmd, "arguments": args} if args is not None else {"execute": cmd}


def hmp(line):
    return ex("human-monitor-command", {"command-line": line})


def test_defaults(amber_bin):
    c, p = amber(amber_bin, ex("query-migrate-capabilities"), ex("query-migrate-parameters"))
    assert c["return"] == caps()
    assert p["return"] == DEFAULT_PARAMS


def test_hmp_lists_them(amber_bin):
    c, p = amber(amber_bin, hmp("info migrate_capabilities"), hmp("info migrate_parameters"))
    assert c["return"] == caps_hmp()
    assert p["return"].endswith(COMPAT_HMP)
    assert p["return"].startswith("max-bandwidth: 0 bytes/second (no limit)\r\n")


@pytest.mark.skipif(not QEMU, reason="Debian's qemu-system-x86 is not installed")
def test_side_by_side_with_qemu(amber_bin):
    q = qmp_session([QEMU, "-machine", "none"],
                    [ex("query-migrate-capabilities"), ex("query-migrate-parameters")])
    a = amber(amber_bin, ex("query-migrate-capabilities"), ex("query-migrate-parameters"))
    qcaps = [x["capability"] for x in q[0]["return"]]
    acaps = [x["capability"] for x in a[0]["return"]]
    # QEMU's own order, then amber's (QEMU 9.0's mapped-ram among them).
    assert acaps[:len(qcaps)] == qcaps
    assert acaps[len(qcaps):] == AMBER_CAPS
    qp, ap = q[1]["return"], a[1]["return"]
    assert set(qp) <= set(ap), set(qp) - set(ap)
    assert set(ap) - set(qp) == set(AMBER_PARAMS) - set(qp)
    for name, value in qp.items():
        if name != "max-bandwidth":
            assert ap[name] == value, name


@pytest.mark.parametrize("name", MISSING_CAPS)
def test_missing_capability_refused_on(amber_bin, name):
    off, on, after = amber(
        amber_bin, ex("migrate-set-capabilities", {"capabilities": [
            {"capability": name, "state": False}]}),
        ex("migrate-set-capabilities", {"capabilities": [
            {"capability": name, "state": True}, {"capability": "events", "state": True}]}),
        ex("query-migrate-capabilities"))
    assert off == {"return": {}}
    assert on["error"]["desc"] == ("Capability '%s' is not supported by amber (it is "
                                   "listed, and accepted off, for QEMU's clients)" % name)
    assert after["return"] == caps()            # all or nothing: events stayed off


def test_block_capabilities_are_vacuous(amber_bin):
    r = amber(amber_bin, ex("migrate-set-capabilities", {"capabilities": [
        {"capability": n, "state": True} for n in VACUOUS_CAPS]}),
        ex("query-migrate-capabilities"), hmp("migrate_set_capability late-block-activate off"),
        ex("query-migrate-capabilities"))
    assert r[0] == {"return": {}}
    assert r[1]["return"] == caps(VACUOUS_CAPS)
    assert r[2]["return"] == ""
    assert r[3]["return"] == caps(set(VACUOUS_CAPS) - {"late-block-activate"})


def other_value(v):
    if isinstance(v, bool):
        return not v
    if isinstance(v, str):
        return "zstd" if v == "none" else "creds0"
    return v + 1


@pytest.mark.parametrize("name", sorted(NEUTRAL_PARAMS))
def test_neutral_parameter(amber_bin, name):
    """QEMU's default is accepted; another value is refused, naming both; nothing changes."""
    default = NEUTRAL_PARAMS[name]
    bad = other_value(default)
    same, other, after = amber(
        amber_bin, ex("migrate-set-parameters", {name: default}),
        ex("migrate-set-parameters", {name: bad, "downtime-limit": 5}),
        ex("query-migrate-parameters"))
    assert same == {"return": {}}

    def shown(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if name == "multifd-compression":
            return v
        return "'%s'" % v if isinstance(v, str) else str(v)
    assert other["error"]["desc"] == (
        "Parameter '%s' cannot be %s: amber does not implement it (only QEMU's default, %s, "
        "is accepted)" % (name, shown(bad), shown(default)))
    assert after["return"] == DEFAULT_PARAMS


def test_vacuous_parameters_are_kept(amber_bin):
    new = {"announce-initial": 0, "announce-max": 100000, "announce-rounds": 1000,
           "announce-step": 1, "block-incremental": True}
    r = amber(amber_bin, ex("migrate-set-parameters", new), ex("query-migrate-parameters"),
              hmp("migrate_set_parameter announce-step 250"), ex("query-migrate-parameters"))
    assert r[0] == {"return": {}}
    assert r[1]["return"] == dict(DEFAULT_PARAMS, **new)
    assert r[2]["return"] == ""
    assert r[3]["return"]["announce-step"] == 250


@pytest.mark.parametrize("args,desc", [
    ({"announce-step": 0}, "Parameter 'announce-step' expects an integer in the range of 1 "
                           "to 10000"),
    ({"announce-initial": 100001}, "Parameter 'announce-initial' expects an integer in the "
                                   "range of 0 to 100000"),
    ({"announce-rounds": 1001}, "Parameter 'announce-rounds' expects an integer in the range "
                                "of 0 to 1000"),
    ({"compress-level": 256}, "Parameter 'compress-level' expects uint8"),
    ({"multifd-compression": "lz4"},
     "Parameter 'multifd-compression' does not accept value 'lz4'"),
    ({"tls-creds": None}, "Invalid parameter type for 'tls-creds', expected: string"),
])
def test_bad_values(amber_bin, args, desc):
    bad, after = amber(amber_bin, ex("migrate-set-parameters", args),
                       ex("query-migrate-parameters"))
    assert bad["error"]["desc"] == desc, bad
    assert after["return"] == DEFAULT_PARAMS


def test_hmp_words(amber_bin):
    r = amber(amber_bin, hmp("migrate_set_parameter multifd-compression zlib"),
              hmp("migrate_set_parameter multifd-compression lz4"),
              hmp("migrate_set_parameter compress-threads 8"),
              hmp("migrate_set_parameter tls-creds x"),
              hmp("migrate_set_parameter xbzrle-cache-size 64M"),
              hmp("migrate_set_capability xbzrle on"))
    assert r[0]["return"].startswith("Error: Parameter 'multifd-compression' cannot be zlib")
    assert r[1]["return"] == ("Error: 'lz4' is not a multifd compression (none, zlib, "
                              "zstd)\r\n")
    assert r[2]["return"] == "" and r[4]["return"] == ""
    assert r[3]["return"].startswith("Error: Parameter 'tls-creds' cannot be 'x'")
    assert "Capability 'xbzrle' is not supported by amber" in r[5]["return"]


def test_capability_names_complete():
    assert ALL_CAPS == QEMU_CAPS + AMBER_CAPS and len(QEMU_CAPS) == 21
    assert set(VACUOUS_CAPS) | set(MISSING_CAPS) <= set(QEMU_CAPS)


def test_migrate_takes_qemus_arguments(amber_bin):
    """libvirt's save: migrate with blk/inc/detach/resume; -machine none has nothing to save."""
    r, = amber(amber_bin, ex("migrate", {"uri": "fd:migrate", "blk": False, "inc": False,
                                         "detach": True, "resume": False}))
    assert r["error"]["desc"] == "The machine is not created yet", r


def test_hmp_help_and_names(amber_bin):
    """help lists info; a wrong capability or parameter name lists the valid ones."""
    r = amber(amber_bin, hmp("help"), hmp("migrate_set_capability nope on"),
              hmp("migrate_set_parameter nope 1"))
    rows = [line.split(" ")[0] for line in r[0]["return"].split("\r\n") if line]
    assert "info" in rows and rows == sorted(rows)
    assert "info [subcommand]" in r[0]["return"]
    assert r[1]["return"] == ("Error: Parameter 'capability' does not accept value 'nope' "
                              "(the capabilities: %s)\r\n" % ", ".join(ALL_CAPS))
    assert r[2]["return"].startswith("Error: Invalid parameter 'nope' (known: max-bandwidth, ")
    assert "direct-io, " in r[2]["return"] and "multifd-zstd-level)" in r[2]["return"]
