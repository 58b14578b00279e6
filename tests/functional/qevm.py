"""A small QEVM v3 stream reader and writer for the tests.

Independent of amber's C code: written from the format alone (big-endian):

    be32 0x5145564d "QEVM", be32 3
    u8 0x07 CONFIGURATION, be32 len, machine type
    sections, each followed by u8 0x7e FOOTER, be32 section_id:
      START 0x01 / FULL 0x04: be32 section_id, u8 idlen, idstr,
                              be32 instance_id, be32 version, payload
      PART 0x02 / END 0x03:   be32 section_id, payload
    u8 0x08 COMMAND, be16 cmd, be16 len, payload
    u8 0x00 EOF
    u8 0x06 VMDESCRIPTION, be32 len, JSON {"page_size", "devices": [...]}

The RAM section ("ram", version 4) is a list of be64 (offset | flags)
records: MEM_SIZE 0x04 (then per block u8 idlen, idstr, be64 length, until
the total), ZERO 0x02 (+ one byte 0), PAGE 0x08 (+ 4096 bytes), CONTINUE 0x20
(same block as before, no idstr), EOS 0x10 ends each RAM section's payload.
A FULL section has no length of its own: its payload is stepped over with
the field sizes the VMDESCRIPTION gives for it.

    s = qevm.parse(open(path, "rb").read())
    s.machine, s.sections, s.ram_blocks(), s.pages(), s.vmdesc
    data = s.serialize()          # the same bytes back (after edits)
"""
import json
import struct

MAGIC = 0x5145564D
VERSION = 3

EOF = 0x00
START = 0x01
PART = 0x02
END = 0x03
FULL = 0x04
SUBSECTION = 0x05
VMDESCRIPTION = 0x06
CONFIGURATION = 0x07
COMMAND = 0x08
FOOTER = 0x7E

RAM_ZERO = 0x02
RAM_MEM_SIZE = 0x04
RAM_PAGE = 0x08
RAM_EOS = 0x10
RAM_CONTINUE = 0x20
PAGE = 4096

TYPE_NAMES = {START: "START", PART: "PART", END: "END", FULL: "FULL"}


class FormatError(Exception):
    pass


class Reader:
    def __init__(self, data, pos=0):
        self.data = data
        self.pos = pos

    def take(self, n, what):
        if self.pos + n > len(self.data):
            raise FormatError("stream ends at %d reading %s" % (len(self.data), what))
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def u8(self, what):
        return self.take(1, what)[0]

    def be16(self, what):
        return struct.unpack(">H", self.take(2, what))[0]

    def be32(self, what):
        return struct.unpack(">I", self.take(4, what))[0]

    def be64(self, what):
        return struct.unpack(">Q", self.take(8, what))[0]


class Section:
    """One section; offset/header_len/end say where it sits in the parsed file."""

    def __init__(self, type, section_id, name=None, instance_id=0, version=0, payload=b""):
        self.type = type
        self.section_id = section_id
        self.name = name
        self.instance_id = instance_id
        self.version = version
        self.payload = payload
        self.offset = self.payload_offset = self.end = None

    def header(self):
        out = struct.pack(">BI", self.type, self.section_id)
        if self.type in (START, FULL):
            n = self.name.encode()
            out += struct.pack(">B", len(n)) + n + struct.pack(">II", self.instance_id,
                                                               self.version)
        return out

    def __repr__(self):
        return "<%s %d %s/%d v%d %dB @%s>" % (TYPE_NAMES.get(self.type, self.type),
                                              self.section_id, self.name, self.instance_id,
                                              self.version, len(self.payload), self.offset)


class Command:
    def __init__(self, cmd, payload=b""):
        self.cmd = cmd
        self.payload = payload
        self.offset = self.end = None


class Stream:
    def __init__(self, machine="amber-pc-1.0"):
        self.machine = machine
        self.items = []            # Section and Command, in stream order
        self.vmdesc = None         # the parsed JSON
        self.vmdesc_raw = None     # its exact bytes (serialize writes them back)
        self.eof_offset = None
        self.vmdesc_offset = None

    @property
    def sections(self):
        return [i for i in self.items if isinstance(i, Section)]

    def full(self, name, instance_id=0):
        for s in self.sections:
            if s.type == FULL and s.name == name and s.instance_id == instance_id:
                return s
        raise KeyError((name, instance_id))

    def ram_sections(self):
        ids = {s.section_id for s in self.sections if s.type == START and s.name == "ram"}
        return [s for s in self.sections if s.section_id in ids]

    def ram_records(self):
        """Every RAM record, in stream order (CONTINUE carries across sections)."""
        state = {}
        for s in self.ram_sections():
            for rec in ram_records(s.payload, state):
                yield rec

    def ram_blocks(self):
        """[(idstr, length)] from the RAM setup."""
        for rec in self.ram_records():
            if rec[0] == "blocks":
                return rec[1]
        return []

    def pages(self):
        """Yields (block, offset, data or None for a zero page) in stream order."""
        for rec in self.ram_records():
            if rec[0] == "page":
                yield rec[1], rec[2], rec[3]

    def serialize(self):
        out = bytearray(struct.pack(">II", MAGIC, VERSION))
        m = self.machine.encode()
        out += struct.pack(">BI", CONFIGURATION, len(m)) + m
        for it in self.items:
            if isinstance(it, Command):
                out += struct.pack(">BHH", COMMAND, it.cmd, len(it.payload)) + it.payload
            else:
                out += it.header() + it.payload + struct.pack(">BI", FOOTER, it.section_id)
        out.append(EOF)
        if self.vmdesc_raw is not None or self.vmdesc is not None:
            raw = self.vmdesc_raw if self.vmdesc_raw is not None else \
                json.dumps(self.vmdesc, separators=(",", ":")).encode()
            out += struct.pack(">BI", VMDESCRIPTION, len(raw)) + raw
        return bytes(out)


# ---- the VMDESCRIPTION and stepping over described payloads ----

def find_vmdesc(data):
    """(offset of the 0x06 byte, parsed JSON, raw bytes) of the trailing description.

    It is the last thing in the stream, and JSON text holds no 0x06 byte.
    """
    for p in range(len(data) - 6, max(-1, len(data) - (16 << 20) - 7), -1):
        if data[p] == VMDESCRIPTION and data[p + 5:p + 6] == b"{":
            (n,) = struct.unpack(">I", data[p + 1:p + 5])
            if p + 5 + n == len(data):
                raw = data[p + 5:]
                return p, json.loads(raw), raw
    raise FormatError("no VMDESCRIPTION at the end of the stream")


def described_size(r, desc):
    """Step r over one described state (fields, then subsections)."""
    for f in desc.get("fields", []):
        if f["type"] == "struct":
            start = r.pos
            described_size(r, f["struct"])
            if r.pos - start != f["size"]:
                raise FormatError("struct %s: %d bytes, described %d"
                                  % (f["name"], r.pos - start, f["size"]))
        else:
            r.take(f["size"] * f.get("array_len", 1), f["name"])
    for sub in desc.get("subsections", []):
        if r.u8("subsection marker") != SUBSECTION:
            raise FormatError("subsection %s expected at %d" % (sub["vmsd_name"], r.pos - 1))
        name = r.take(r.u8("subsection name length"), "subsection name").decode()
        if name != sub["vmsd_name"]:
            raise FormatError("subsection %s expected, got %s" % (sub["vmsd_name"], name))
        r.be32("subsection version")
        described_size(r, sub)


# ---- RAM records ----

def ram_records(payload, state=None):
    """Decode a RAM section's payload: ("blocks", [(idstr, len)]), ("page", block,
    offset, data|None), ("eos",).  Raises FormatError on anything malformed.
    `state` (a dict) carries the CONTINUE block from one section to the next."""
    r = Reader(payload)
    state = {} if state is None else state
    block = state.get("block")
    out = []
    while True:
        word = r.be64("RAM record")
        flags, addr = word & (PAGE - 1), word & ~(PAGE - 1)
        if flags & RAM_EOS:
            out.append(("eos",))
            break
        if flags & RAM_MEM_SIZE:
            blocks, left = [], addr
            while left:
                name = r.take(r.u8("block name length"), "block name").decode()
                length = r.be64("block length")
                if length > left:
                    raise FormatError("block %s longer than the RAM left" % name)
                blocks.append((name, length))
                left -= length
            out.append(("blocks", blocks))
            continue
        if not flags & RAM_CONTINUE:
            block = r.take(r.u8("block name length"), "block name").decode()
        if block is None:
            raise FormatError("CONTINUE without a block")
        if flags & RAM_ZERO:
            r.u8("zero fill")
            out.append(("page", block, addr, None))
        elif flags & RAM_PAGE:
            out.append(("page", block, addr, r.take(PAGE, "page")))
        else:
            raise FormatError("RAM record with flags 0x%x" % flags)
        state["block"] = block
    if r.pos != len(payload):
        raise FormatError("RAM payload has %d bytes after EOS" % (len(payload) - r.pos))
    return out


def ram_payload_len(data, pos, state):
    """Length of a RAM payload starting at pos (up to and including its EOS)."""
    r = Reader(data, pos)
    block = state.get("block")
    while True:
        word = r.be64("RAM record")
        flags, addr = word & (PAGE - 1), word & ~(PAGE - 1)
        if flags & RAM_EOS:
            state["block"] = block
            return r.pos - pos
        if flags & RAM_MEM_SIZE:
            left = addr
            while left:
                r.take(r.u8("block name length"), "block name")
                left -= min(left, r.be64("block length"))
            continue
        if not flags & RAM_CONTINUE:
            block = r.take(r.u8("block name length"), "block name")
        if block is None:
            raise FormatError("CONTINUE without a block")
        r.take(1 if flags & RAM_ZERO else PAGE, "page")


# ---- parsing a whole stream ----

def parse(data):
    s = Stream()
    off, desc, raw = find_vmdesc(data)
    s.vmdesc, s.vmdesc_raw, s.vmdesc_offset = desc, raw, off
    devices = {(d["name"], d["instance_id"]): d for d in desc["devices"]}
    r = Reader(data)
    if r.be32("magic") != MAGIC or r.be32("version") != VERSION:
        raise FormatError("not a QEVM v3 stream")
    if r.u8("configuration") != CONFIGURATION:
        raise FormatError("no configuration section")
    s.machine = r.take(r.be32("configuration length"), "machine type").decode()
    names = {}
    ram_state = {}
    while True:
        at = r.pos
        t = r.u8("section type")
        if t == EOF:
            s.eof_offset = at
            break
        if t == COMMAND:
            cmd, n = r.be16("command"), r.be16("command length")
            c = Command(cmd, r.take(n, "command payload"))
            c.offset, c.end = at, r.pos
            s.items.append(c)
            continue
        if t not in TYPE_NAMES:
            raise FormatError("section type 0x%02x at %d" % (t, at))
        sec = Section(t, r.be32("section id"))
        if t in (START, FULL):
            sec.name = r.take(r.u8("name length"), "name").decode()
            sec.instance_id, sec.version = r.be32("instance"), r.be32("version")
            names[sec.section_id] = (sec.name, sec.instance_id)
        else:
            sec.name, sec.instance_id = names[sec.section_id]
        sec.offset, sec.payload_offset = at, r.pos
        if t == FULL:
            d = devices.get((sec.name, sec.instance_id))
            if d is None:
                raise FormatError("FULL section %s/%d not described"
                                  % (sec.name, sec.instance_id))
            described_size(r, d)
        else:
            r.take(ram_payload_len(data, r.pos, ram_state), "RAM payload")
        sec.payload = data[sec.payload_offset:r.pos]
        if r.u8("footer") != FOOTER or r.be32("footer id") != sec.section_id:
            raise FormatError("bad footer of section %d at %d" % (sec.section_id, r.pos - 5))
        sec.end = r.pos
        s.items.append(sec)
    if r.pos != off:
        raise FormatError("EOF at %d but the VMDESCRIPTION starts at %d" % (r.pos - 1, off))
    return s


def read(path):
    with open(path, "rb") as f:
        return parse(f.read())


def ram_image(stream):
    """{block: bytearray} of the RAM the stream carries (absent pages zero)."""
    mem = {name: bytearray(length) for name, length in stream.ram_blocks()}
    for block, offset, data in stream.pages():
        if data is not None:
            mem[block][offset:offset + PAGE] = data
    return mem


# ---- building streams (synthetic test input) ----

def ram_setup_payload(blocks):
    out = struct.pack(">Q", sum(n for _, n in blocks) | RAM_MEM_SIZE)
    for name, n in blocks:
        b = name.encode()
        out += struct.pack(">B", len(b)) + b + struct.pack(">Q", n)
    return out + struct.pack(">Q", RAM_EOS)


def ram_pages_payload(pages):
    """pages: [(block, offset, data or None)]; consecutive ones use CONTINUE."""
    out, last = b"", None
    for block, offset, data in pages:
        flags = RAM_ZERO if data is None else RAM_PAGE
        if block == last:
            out += struct.pack(">Q", offset | flags | RAM_CONTINUE)
        else:
            b = block.encode()
            out += struct.pack(">Q", offset | flags) + struct.pack(">B", len(b)) + b
        out += b"\0" if data is None else data
        last = block
    return out + struct.pack(">Q", RAM_EOS)
