#!/usr/bin/env python3
"""Generate amber's QMP plumbing from the schema (qapi/*.json).

The schema uses QEMU's dialect: one expression per definition, single-quoted
strings, '#' comments and '##' doc blocks.  From it this script writes, into
the output directory:

  qapi-types.h/.c     C types for enums, structs and lists; free functions,
                      JSON input (with argument checking) and output
  qapi-commands.h/.c  handler prototypes qmp_<name>(Amber *s, <args>, errp),
                      the marshallers and the command table
  qapi-events.h/.c    qapi_event_send_<name>(Amber *s, <data>) and the event names
  qapi-introspect.h/.c  the reply of query-qmp-schema: the schema as QEMU's
                      SchemaInfo list (qapi/introspect.json), names unmasked
  qmp-reference.md    the user reference

Handlers are plain C functions defined wherever their area lives; this
script only declares them.  Standard library only.

Usage: qapi-gen.py -o OUTDIR [--doc PATH] SCHEMA.json [MORE.json...]
"""
import argparse
import json
import os
import re
import sys


class SchemaError(Exception):
    pass


# ---- parsing ---------------------------------------------------------------

class Parser:
    """Reads one schema file into a list of (expr, doc, info) triples."""

    def __init__(self, path):
        self.path = path
        with open(path, encoding="utf-8") as f:
            self.src = f.read()
        self.pos = 0
        self.line = 1

    def where(self):
        return "%s:%d" % (self.path, self.line)

    def fail(self, msg):
        raise SchemaError("%s: %s" % (self.where(), msg))

    def skip_space(self):
        """Skip blanks and comments; return a doc block (list of lines) if one was read."""
        doc = None
        while self.pos < len(self.src):
            c = self.src[self.pos]
            if c == "\n":
                self.line += 1
                self.pos += 1
            elif c in " \t\r":
                self.pos += 1
            elif c == "#":
                at_line_start = self.pos == 0 or self.src[self.pos - 1] == "\n"
                if at_line_start and self.src.startswith("##", self.pos) and \
                        self.rest_of_line().strip() == "##":
                    doc = self.read_doc()
                else:
                    self.rest_of_line(consume=True)
            else:
                break
        return doc

    def rest_of_line(self, consume=False):
        end = self.src.find("\n", self.pos)
        if end < 0:
            end = len(self.src)
        text = self.src[self.pos:end]
        if consume:
            self.pos = end
        return text

    def read_doc(self):
        start_line = self.line
        self.rest_of_line(consume=True)
        lines = []
        while True:
            if self.pos >= len(self.src):
                raise SchemaError("%s:%d: unterminated doc block" % (self.path, start_line))
            self.pos += 1       # the newline
            self.line += 1
            text = self.rest_of_line(consume=True)
            if text.strip() == "##":
                return lines
            if not text.startswith("#"):
                self.fail("doc block lines must start with '#'")
            text = text[1:]
            if text.startswith(" "):
                text = text[1:]
            lines.append(text.rstrip())

    def value(self):
        self.skip_space()
        if self.pos >= len(self.src):
            self.fail("unexpected end of file")
        c = self.src[self.pos]
        if c == "{":
            return self.obj()
        if c == "[":
            return self.arr()
        if c == "'":
            return self.string()
        for word, val in (("true", True), ("false", False)):
            if self.src.startswith(word, self.pos):
                self.pos += len(word)
                return val
        self.fail("unexpected character %r" % c)

    def expect(self, ch):
        self.skip_space()
        if not self.src.startswith(ch, self.pos):
            self.fail("expected %r" % ch)
        self.pos += 1

    def string(self):
        self.pos += 1
        out = []
        while True:
            if self.pos >= len(self.src) or self.src[self.pos] == "\n":
                self.fail("unterminated string")
            c = self.src[self.pos]
            self.pos += 1
            if c == "'":
                return "".join(out)
            if c == "\\":
                out.append(self.src[self.pos])
                self.pos += 1
            else:
                out.append(c)

    def obj(self):
        self.pos += 1
        out = {}
        self.skip_space()
        if self.src.startswith("}", self.pos):
            self.pos += 1
            return out
        while True:
            self.skip_space()
            if not self.src.startswith("'", self.pos):
                self.fail("expected a quoted key")
            key = self.string()
            if key in out:
                self.fail("duplicate key '%s'" % key)
            self.expect(":")
            out[key] = self.value()
            self.skip_space()
            if self.src.startswith(",", self.pos):
                self.pos += 1
                continue
            self.expect("}")
            return out

    def arr(self):
        self.pos += 1
        out = []
        self.skip_space()
        if self.src.startswith("]", self.pos):
            self.pos += 1
            return out
        while True:
            out.append(self.value())
            self.skip_space()
            if self.src.startswith(",", self.pos):
                self.pos += 1
                continue
            self.expect("]")
            return out

    def exprs(self):
        out = []
        while True:
            doc = self.skip_space()
            if doc is not None and is_free_doc(doc):
                out.append((None, doc, self.where()))
                doc = None
                doc = self.skip_space() if self.pos < len(self.src) else None
            if self.pos >= len(self.src):
                if doc is not None:
                    self.fail("doc block not followed by a definition")
                return out
            info = self.where()
            if self.src[self.pos] != "{":
                self.fail("expected '{' to start a definition")
            out.append((self.obj(), doc, info))


def is_free_doc(lines):
    """A doc block that documents no definition: a heading or free text."""
    return not lines or not lines[0].startswith("@")


# ---- the model ---------------------------------------------------------------

BUILTINS = {
    # name: (C type, JSON kind, min, max)
    "str": ("char *", "string", None, None),
    "int": ("int64_t", "integer", "INT64_MIN", "INT64_MAX"),
    "int8": ("int64_t", "integer", "INT8_MIN", "INT8_MAX"),
    "int16": ("int64_t", "integer", "INT16_MIN", "INT16_MAX"),
    "int32": ("int64_t", "integer", "INT32_MIN", "INT32_MAX"),
    "int64": ("int64_t", "integer", "INT64_MIN", "INT64_MAX"),
    "uint8": ("uint64_t", "integer", "0", "UINT8_MAX"),
    "uint16": ("uint64_t", "integer", "0", "UINT16_MAX"),
    "uint32": ("uint64_t", "integer", "0", "UINT32_MAX"),
    "uint64": ("uint64_t", "integer", "0", "UINT64_MAX"),
    "size": ("uint64_t", "integer", "0", "UINT64_MAX"),
    "bool": ("bool", "boolean", None, None),
    "number": ("double", "number", None, None),
    "any": ("JsonNode *", "value", None, None),
}

BUILTIN_LIST_NAMES = {"str": "strList", "int": "intList", "int64": "int64List",
                      "uint64": "uint64List", "size": "sizeList", "bool": "boolList",
                      "number": "numberList", "any": "anyList", "int8": "int8List",
                      "int16": "int16List", "int32": "int32List", "uint8": "uint8List",
                      "uint16": "uint16List", "uint32": "uint32List"}


C_KEYWORDS = {"auto", "break", "case", "char", "const", "continue", "default", "do",
              "double", "else", "enum", "extern", "float", "for", "goto", "if", "inline",
              "int", "long", "register", "restrict", "return", "short", "signed", "sizeof",
              "static", "struct", "switch", "typedef", "union", "unsigned", "void",
              "volatile", "while", "bool", "true", "false"}


def c_name(name):
    """A C identifier for name; C's keywords get QEMU's "q_" prefix ("q_static")."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return "q_" + name if name in C_KEYWORDS else name


def camel_to_upper(name):
    out = ""
    for i, ch in enumerate(name):
        if i and ch.isupper():
            prev = name[i - 1]
            nxt = name[i + 1] if i + 1 < len(name) else ""
            if prev.islower() or prev.isdigit() or (prev.isupper() and nxt.islower()):
                out += "_"
        out += ch
    return c_name(out).upper()


class Member:
    def __init__(self, name, typ, optional, info):
        self.name = name
        self.typ = typ            # a type name or a one-element list
        self.optional = optional
        self.info = info
        self.doc = ""

    @property
    def cname(self):
        return c_name(self.name)


class Schema:
    def __init__(self):
        self.enums = {}
        self.structs = {}
        self.commands = []
        self.events = []
        self.order = []           # ("doc"|"enum"|..., object) in schema order
        self.files_seen = set()
        self.lists = {}           # element type name -> list C name, in use order

    # ---- loading ----
    def load(self, path):
        path = os.path.normpath(path)
        if path in self.files_seen:
            return
        self.files_seen.add(path)
        for expr, doc, info in Parser(path).exprs():
            if expr is None:
                self.order.append(("doc", doc))
                continue
            if "include" in expr:
                self.load(os.path.join(os.path.dirname(path), expr["include"]))
                continue
            self.define(expr, doc, info)

    def define(self, expr, doc, info):
        meta = [k for k in ("enum", "struct", "command", "event") if k in expr]
        if len(meta) != 1:
            raise SchemaError("%s: a definition needs exactly one of enum, struct, "
                              "command, event" % info)
        kind = meta[0]
        name = expr[kind]
        if doc is None:
            raise SchemaError("%s: %s '%s' has no doc block" % (info, kind, name))
        d = parse_doc(doc, name, info)
        defn = {"kind": kind, "name": name, "expr": expr, "doc": d, "info": info}
        if kind == "enum":
            defn["values"] = [v if isinstance(v, str) else v["name"] for v in expr["data"]]
            defn["prefix"] = expr.get("prefix", camel_to_upper(name))
            defn["header"] = expr.get("x-c-header")
            self.check_new_type(name, info)
            self.enums[name] = defn
        elif kind == "struct":
            defn["members"] = self.members(expr.get("data", {}), info)
            self.check_new_type(name, info)
            self.structs[name] = defn
        elif kind == "command":
            defn["returns"] = expr.get("returns")
            data = expr.get("data", {})
            defn["arg_struct"] = data if isinstance(data, str) else None
            # 'boxed': the handler takes the argument struct whole (many members).
            defn["boxed"] = expr.get("boxed", False)
            if defn["boxed"] and not isinstance(data, str):
                raise SchemaError("%s: command '%s' is boxed: its data must name a struct"
                                  % (info, name))
            if isinstance(data, str):
                defn["members"] = "struct:" + data
            else:
                defn["members"] = self.members(data, info)
            if any(c["name"] == name for c in self.commands):
                raise SchemaError("%s: command '%s' defined twice" % (info, name))
            self.commands.append(defn)
        else:
            defn["members"] = self.members(expr.get("data", {}), info)
            self.events.append(defn)
        self.order.append((kind, defn))

    def check_new_type(self, name, info):
        if name in self.enums or name in self.structs or name in BUILTINS:
            raise SchemaError("%s: type '%s' defined twice" % (info, name))

    def members(self, data, info):
        out = []
        for key, typ in data.items():
            if isinstance(typ, dict):
                typ = typ["type"]
            optional = key.startswith("*")
            out.append(Member(key.lstrip("*"), typ, optional, info))
        return out

    # ---- checking ----
    def finish(self):
        for c in self.commands:
            if isinstance(c["members"], str):
                sname = c["members"][len("struct:"):]
                if sname not in self.structs:
                    raise SchemaError("%s: unknown type '%s'" % (c["info"], sname))
                c["members"] = self.structs[sname]["members"]
        for d in list(self.structs.values()) + self.commands + self.events:
            for m in d["members"]:
                self.check_type(m.typ, m.info)
                m.doc = d["doc"]["args"].pop(m.name, "")
                if not m.doc:
                    raise SchemaError("%s: member '%s' of '%s' is not documented"
                                      % (d["info"], m.name, d["name"]))
            if d["doc"]["args"]:
                raise SchemaError("%s: doc of '%s' names unknown members: %s"
                                  % (d["info"], d["name"], ", ".join(d["doc"]["args"])))
        for c in self.commands:
            if c["returns"] is not None:
                self.check_type(c["returns"], c["info"])

    def check_type(self, typ, info):
        if isinstance(typ, list):
            if len(typ) != 1:
                raise SchemaError("%s: a list type has exactly one element type" % info)
            self.check_type(typ[0], info)
            self.lists.setdefault(typ[0], None)
            return
        if typ not in BUILTINS and typ not in self.enums and typ not in self.structs:
            raise SchemaError("%s: unknown type '%s'" % (info, typ))

    # ---- C types ----
    def list_cname(self, elem):
        if elem in BUILTINS:
            return BUILTIN_LIST_NAMES[elem]
        return elem + "List"

    def ctype(self, typ, const=False):
        """C type of a member or return value of schema type typ."""
        if isinstance(typ, list):
            return self.list_cname(typ[0]) + " *"
        if typ in BUILTINS:
            t = BUILTINS[typ][0]
            return "const char *" if (const and t == "char *") else t
        if typ in self.enums:
            return typ
        return typ + " *"


# ---- doc comments ------------------------------------------------------------

SECTION_RE = re.compile(r"^(Returns|Since|Example|Examples|Note|Notes|Errors):\s*(.*)$")


def parse_doc(lines, name, info):
    """Split a definition's doc block into body, member docs and sections."""
    if not lines or lines[0].rstrip(":") != "@" + name:
        raise SchemaError("%s: doc block should start with '@%s:'" % (info, name))
    body, args, sections = [], {}, []
    cur = ("body", None)
    for line in lines[1:]:
        m = re.match(r"^@([\w-]+):\s*(.*)$", line)
        s = SECTION_RE.match(line)
        if m and cur[0] in ("body", "arg"):
            cur = ("arg", m.group(1))
            args[m.group(1)] = m.group(2)
        elif s:
            cur = ("section", len(sections))
            sections.append([s.group(1), [s.group(2)] if s.group(2) else []])
        elif cur[0] == "arg":
            if line.strip():
                args[cur[1]] += " " + line.strip()
            else:
                cur = ("body", None)
        elif cur[0] == "section":
            sections[cur[1]][1].append(line)
        else:
            body.append(line)
    for sec in sections:
        while sec[1] and not sec[1][-1].strip():
            sec[1].pop()
        while sec[1] and not sec[1][0].strip():
            sec[1].pop(0)
    return {"body": "\n".join(body).strip(), "args": args, "sections": sections}


# ---- C generation ----------------------------------------------------------------

def decl(ctype, name):
    """A C declaration of name with type ctype ("char *" + "x" -> "char *x")."""
    return ctype + name if ctype.endswith("*") else ctype + " " + name


HEADER = "/* Generated by scripts/qapi-gen.py from the QMP schema; do not edit. */\n"


class CGen:
    def __init__(self, schema):
        self.s = schema

    # -- types --
    def types_h(self):
        s = self.s
        out = [HEADER, "#ifndef AMBER_QAPI_TYPES_H\n#define AMBER_QAPI_TYPES_H\n\n",
               "#include <stdbool.h>\n#include <stdint.h>\n#include <json-glib/json-glib.h>\n",
               "#include \"util/error.h\"\n"]
        for h in sorted({e["header"] for e in s.enums.values() if e["header"]}):
            out.append("#include \"%s\"\n" % h)
        out.append("\n")
        for e in s.enums.values():
            if not e["header"]:
                out.append("typedef enum %s {\n" % e["name"])
                for v in e["values"]:
                    out.append("    %s_%s,\n" % (e["prefix"], c_name(v).upper()))
                out.append("    %s__MAX,\n} %s;\n" % (e["prefix"], e["name"]))
            out.append("extern const char *const %s_lookup[];\n" % e["name"])
            out.append("const char *%s_str(%s val);\n\n" % (e["name"], e["name"]))
        for st in self.all_structs():
            out.append("typedef struct %s %s;\n" % (st["name"], st["name"]))
        for elem in s.lists:
            ln = s.list_cname(elem)
            out.append("typedef struct %s %s;\n" % (ln, ln))
        out.append("\n")
        for elem in s.lists:
            ln = s.list_cname(elem)
            out.append("struct %s {\n    %s *next;\n    %s;\n};\n\n"
                       % (ln, ln, decl(s.ctype(elem), "value")))
        for st in self.all_structs():
            out.append("struct %s {\n" % st["name"])
            for m in st["members"]:
                if m.optional:
                    out.append("    bool has_%s;\n" % m.cname)
                out.append("    %s;\n" % decl(s.ctype(m.typ), m.cname))
            if not st["members"]:
                out.append("    char unused;\n")
            out.append("};\n\n")
        for st in self.all_structs():
            n = st["name"]
            out.append("void qapi_free_%s(%s *p);\n" % (n, n))
            out.append("bool qapi_in_members_%s(JsonObject *obj, const char *prefix, "
                       "%s *p, Error **errp);\n" % (n, n))
            out.append("bool qapi_in_%s(JsonNode *node, const char *path, %s **out, "
                       "Error **errp);\n" % (n, n))
            out.append("JsonNode *qapi_out_%s(const %s *p);\n\n" % (n, n))
        for elem in s.lists:
            ln = s.list_cname(elem)
            out.append("void qapi_free_%s(%s *l);\n" % (ln, ln))
            out.append("bool qapi_in_%s(JsonNode *node, const char *path, %s **out, "
                       "Error **errp);\n" % (ln, ln))
            out.append("JsonNode *qapi_out_%s(const %s *l);\n\n" % (ln, ln))
        out.append("#endif\n")
        return "".join(out)

    def all_structs(self):
        """Named structs plus the implicit argument structs of commands and events."""
        out = list(self.s.structs.values())
        for c in self.s.commands + self.s.events:
            if c["members"] and not c.get("boxed"):
                out.append({"name": self.arg_struct(c), "members": c["members"]})
        return out

    def arg_struct(self, d):
        # A boxed command's arguments are its named struct itself.
        return d["arg_struct"] if d.get("boxed") else "q_obj_%s_arg" % c_name(d["name"])

    def types_c(self):
        s = self.s
        out = [HEADER, "#include <glib.h>\n#include \"qapi-types.h\"\n",
               "#include \"monitor/qapi-runtime.h\"\n\n"]
        for e in s.enums.values():
            out.append(self.enum_c(e))
        for elem in s.lists:
            out.append(self.list_c(elem))
        for st in self.all_structs():
            out.append(self.struct_free(st))
            out.append(self.struct_in(st))
            out.append(self.struct_out(st))
        return "".join(out)

    def enum_c(self, e):
        n = e["name"]
        out = []
        if e["header"]:
            # The C enum lives in a hand-written header: make sure it still
            # matches the schema, value for value.
            for i, v in enumerate(e["values"]):
                const = "%s_%s" % (e["prefix"], c_name(v).upper())
                out.append('_Static_assert(%s == %d, "%s does not match qapi enum %s");\n'
                           % (const, i, const, n))
        out.append("const char *const %s_lookup[] = {\n" % n)
        for v in e["values"]:
            out.append('    "%s",\n' % v)
        out.append("    NULL,\n};\n\n")
        out.append("const char *%s_str(%s val)\n{\n" % (n, n))
        out.append("    if ((unsigned)val >= %d) {\n        return \"<invalid>\";\n    }\n"
                   % len(e["values"]))
        out.append("    return %s_lookup[val];\n}\n\n" % n)
        return "".join(out)

    def free_value(self, typ, lvalue, indent):
        s, pad = self.s, " " * indent
        if isinstance(typ, list):
            return "%sqapi_free_%s(%s);\n" % (pad, s.list_cname(typ[0]), lvalue)
        if typ == "str":
            return "%sg_free(%s);\n" % (pad, lvalue)
        if typ == "any":
            return "%sif (%s) {\n%s    json_node_unref(%s);\n%s}\n" % (
                pad, lvalue, pad, lvalue, pad)
        if typ in s.structs:
            return "%sqapi_free_%s(%s);\n" % (pad, typ, lvalue)
        return ""

    def struct_free(self, st):
        n = st["name"]
        out = ["void qapi_free_%s(%s *p)\n{\n    if (!p) {\n        return;\n    }\n" % (n, n)]
        for m in st["members"]:
            out.append(self.free_value(m.typ, "p->" + m.cname, 4))
        out.append("    g_free(p);\n}\n\n")
        return "".join(out)

    def input_value(self, typ, node, path, lvalue, indent):
        """Code that reads JsonNode `node` into `lvalue`, returning false on error."""
        s, pad = self.s, " " * indent
        fail = " {\n%s    return false;\n%s}\n" % (pad, pad)
        if isinstance(typ, list):
            return "%sif (!qapi_in_%s(%s, %s, &%s, errp))%s" % (
                pad, s.list_cname(typ[0]), node, path, lvalue, fail)
        if typ in s.structs:
            return "%sif (!qapi_in_%s(%s, %s, &%s, errp))%s" % (
                pad, typ, node, path, lvalue, fail)
        if typ in s.enums:
            return ("%s{\n%s    int v;\n%s    if (!qapi_in_enum(%s, %s, %s_lookup, &v, errp))"
                    " {\n%s        return false;\n%s    }\n%s    %s = v;\n%s}\n") % (
                pad, pad, pad, node, path, typ, pad, pad, pad, lvalue, pad)
        ctype, kind, lo, hi = BUILTINS[typ]
        if typ == "str":
            call = "qapi_in_str(%s, %s, &%s, errp)" % (node, path, lvalue)
        elif typ == "bool":
            call = "qapi_in_bool(%s, %s, &%s, errp)" % (node, path, lvalue)
        elif typ == "number":
            call = "qapi_in_number(%s, %s, &%s, errp)" % (node, path, lvalue)
        elif typ == "any":
            call = "qapi_in_any(%s, %s, &%s, errp)" % (node, path, lvalue)
        elif ctype == "uint64_t":
            call = 'qapi_in_uint(%s, %s, %s, "%s", &%s, errp)' % (node, path, hi, typ, lvalue)
        else:
            call = 'qapi_in_int(%s, %s, %s, %s, "%s", &%s, errp)' % (
                node, path, lo, hi, "int64" if typ == "int" else typ, lvalue)
        return "%sif (!%s)%s" % (pad, call, fail)

    def struct_in(self, st):
        n = st["name"]
        out = ["bool qapi_in_members_%s(JsonObject *obj, const char *prefix, %s *p, "
               "Error **errp)\n{\n" % (n, n)]
        known = ", ".join('"%s"' % m.name for m in st["members"])
        out.append("    static const char *const known[] = { %sNULL };\n"
                   % (known + ", " if known else ""))
        for m in st["members"]:
            out.append("    {\n")
            out.append('        g_autofree char *path = qapi_path(prefix, "%s");\n' % m.name)
            out.append('        JsonNode *n = json_object_get_member(obj, "%s");\n\n' % m.name)
            if m.optional:
                out.append("        if (n) {\n            p->has_%s = true;\n" % m.cname)
                out.append(self.input_value(m.typ, "n", "path", "p->" + m.cname, 12))
                out.append("        }\n")
            else:
                out.append("        if (!n) {\n            qapi_err_missing(path, errp);\n"
                           "            return false;\n        }\n")
                out.append(self.input_value(m.typ, "n", "path", "p->" + m.cname, 8))
            out.append("    }\n")
        out.append("    return qapi_check_unexpected(obj, prefix, known, errp);\n}\n\n")
        out.append("bool qapi_in_%s(JsonNode *node, const char *path, %s **out, "
                   "Error **errp)\n{\n" % (n, n))
        out.append("    JsonObject *obj = qapi_in_object(node, path, errp);\n")
        out.append("    %s *p;\n\n    *out = NULL;\n    if (!obj) {\n        return false;\n"
                   "    }\n" % n)
        out.append("    p = g_new0(%s, 1);\n" % n)
        out.append("    if (!qapi_in_members_%s(obj, path, p, errp)) {\n" % n)
        out.append("        qapi_free_%s(p);\n        return false;\n    }\n" % n)
        out.append("    *out = p;\n    return true;\n}\n\n")
        return "".join(out)

    def output_value(self, typ, rvalue):
        """A C expression giving a new JsonNode for rvalue."""
        s = self.s
        if isinstance(typ, list):
            return "qapi_out_%s(%s)" % (s.list_cname(typ[0]), rvalue)
        if typ in s.structs:
            return "qapi_out_%s(%s)" % (typ, rvalue)
        if typ in s.enums:
            return "qapi_node_str(%s_str(%s))" % (typ, rvalue)
        ctype = BUILTINS[typ][0]
        if typ == "str":
            return "qapi_node_str(%s)" % rvalue
        if typ == "bool":
            return "qapi_node_bool(%s)" % rvalue
        if typ == "number":
            return "qapi_node_double(%s)" % rvalue
        if typ == "any":
            return "qapi_node_copy(%s)" % rvalue
        if ctype == "uint64_t":
            return "qapi_node_int((int64_t)%s)" % rvalue
        return "qapi_node_int(%s)" % rvalue

    def struct_out(self, st):
        n = st["name"]
        out = ["JsonNode *qapi_out_%s(const %s *p)\n{\n" % (n, n),
               "    JsonObject *o = json_object_new();\n\n"]
        for m in st["members"]:
            line = '    json_object_set_member(o, "%s", %s);\n' % (
                m.name, self.output_value(m.typ, "p->" + m.cname))
            if m.optional:
                out.append("    if (p->has_%s) {\n    %s    }\n" % (m.cname, line))
            else:
                out.append(line)
        out.append("    return qapi_node_take_object(o);\n}\n\n")
        return "".join(out)

    def list_c(self, elem):
        s = self.s
        ln = s.list_cname(elem)
        out = ["void qapi_free_%s(%s *l)\n{\n" % (ln, ln),
               "    while (l) {\n        %s *next = l->next;\n\n" % ln,
               self.free_value(elem, "l->value", 8),
               "        g_free(l);\n        l = next;\n    }\n}\n\n"]
        out.append("bool qapi_in_%s(JsonNode *node, const char *path, %s **out, "
                   "Error **errp)\n{\n" % (ln, ln))
        out.append("    JsonArray *a = qapi_in_array(node, path, errp);\n")
        out.append("    %s **tail = out;\n\n    *out = NULL;\n" % ln)
        out.append("    if (!a) {\n        return false;\n    }\n")
        out.append("    for (guint i = 0; i < json_array_get_length(a); i++) {\n")
        out.append("        g_autofree char *ipath = g_strdup_printf(\"%s[%u]\", path, i);\n")
        out.append("        JsonNode *n = json_array_get_element(a, i);\n")
        out.append("        *tail = g_new0(%s, 1);\n" % ln)
        body = self.input_value(elem, "n", "ipath", "(*tail)->value", 8)
        body = body.replace("return false;", "goto fail;")
        out.append(body)
        out.append("        tail = &(*tail)->next;\n    }\n    return true;\n\nfail:\n")
        out.append("    qapi_free_%s(*out);\n    *out = NULL;\n    return false;\n}\n\n" % ln)
        out.append("JsonNode *qapi_out_%s(const %s *l)\n{\n" % (ln, ln))
        out.append("    JsonArray *a = json_array_new();\n\n")
        out.append("    for (; l; l = l->next) {\n")
        out.append("        json_array_add_element(a, %s);\n    }\n"
                   % self.output_value(elem, "l->value"))
        out.append("    return qapi_node_take_array(a);\n}\n\n")
        return "".join(out)

    # -- commands --
    def handler_proto(self, c):
        s = self.s
        ret = "void " if c["returns"] is None else s.ctype(c["returns"])
        if not ret.endswith("*") and not ret.endswith(" "):
            ret += " "
        params = ["Amber *s"]
        if c["boxed"]:
            params.append("const %s *arg" % self.arg_struct(c))
        for m in [] if c["boxed"] else c["members"]:
            if m.optional:
                params.append("bool has_%s" % m.cname)
            t = s.ctype(m.typ, const=True)
            params.append(t + ("" if t.endswith("*") else " ") + m.cname)
        params.append("Error **errp")
        return "%sqmp_%s(%s)" % (ret, c_name(c["name"]), ", ".join(params))

    def commands_h(self):
        out = [HEADER, "#ifndef AMBER_QAPI_COMMANDS_H\n#define AMBER_QAPI_COMMANDS_H\n\n",
               "#include \"system/amber.h\"\n#include \"monitor/qapi-runtime.h\"\n",
               "#include \"qapi-types.h\"\n\n",
               "/* Handlers: defined by the area that owns each command. */\n"]
        for c in self.s.commands:
            out.append(self.handler_proto(c) + ";\n")
        out.append("\n/* Every command of the schema, terminated by a NULL name. */\n")
        out.append("extern const QmpCommand qmp_command_table[];\n\n#endif\n")
        return "".join(out)

    def commands_c(self):
        s = self.s
        out = [HEADER, "#include <glib.h>\n#include \"qapi-commands.h\"\n\n"]
        for c in s.commands:
            cn = c_name(c["name"])
            out.append("static void qmp_marshal_%s(Amber *s, JsonObject *args, "
                       "JsonNode **ret, Error **errp)\n{\n" % cn)
            out.append("    Error *err = NULL;\n")
            if c["members"]:
                st = self.arg_struct(c)
                out.append("    %s *arg = g_new0(%s, 1);\n\n" % (st, st))
                out.append("    if (!qapi_in_members_%s(args, NULL, arg, &err)) {\n" % st)
                out.append("        goto out;\n    }\n")
            else:
                out.append("    static const char *const known[] = { NULL };\n\n")
                out.append("    if (!qapi_check_unexpected(args, NULL, known, &err)) {\n")
                out.append("        goto out;\n    }\n")
            argv = ["s", "arg"] if c["boxed"] else ["s"]
            for m in [] if c["boxed"] else c["members"]:
                if m.optional:
                    argv.append("arg->has_%s" % m.cname)
                argv.append("arg->" + m.cname)
            argv.append("&err")
            call = "qmp_%s(%s)" % (cn, ", ".join(argv))
            if c["returns"] is None:
                out.append("    %s;\n    if (!err) {\n" % call)
                out.append("        *ret = qapi_node_take_object(json_object_new());\n    }\n")
            else:
                rt = c["returns"]
                out.append("    {\n        %sr = %s;\n\n" % (
                    s.ctype(rt) + ("" if s.ctype(rt).endswith("*") else " "), call))
                out.append("        if (!err) {\n            *ret = %s;\n        }\n"
                           % self.output_value(rt, "r"))
                free = self.free_value(rt, "r", 8)
                out.append(free)
                out.append("    }\n")
            out.append("out:\n")
            if c["members"]:
                out.append("    qapi_free_%s(arg);\n" % self.arg_struct(c))
            out.append("    error_propagate(errp, err);\n}\n\n")
        out.append("const QmpCommand qmp_command_table[] = {\n")
        for c in s.commands:
            out.append('    { "%s", qmp_marshal_%s },\n' % (c["name"], c_name(c["name"])))
        out.append("    { NULL, NULL },\n};\n")
        return "".join(out)

    # -- events --
    def event_proto(self, e):
        params = ["Amber *s"]
        for m in e["members"]:
            if m.optional:
                params.append("bool has_%s" % m.cname)
            t = self.s.ctype(m.typ, const=True)
            params.append(t + ("" if t.endswith("*") else " ") + m.cname)
        return "void qapi_event_send_%s(%s)" % (c_name(e["name"]).lower(), ", ".join(params))

    def events_h(self):
        out = [HEADER, "#ifndef AMBER_QAPI_EVENTS_H\n#define AMBER_QAPI_EVENTS_H\n\n",
               "#include \"system/amber.h\"\n#include \"qapi-types.h\"\n\n"]
        for e in self.s.events:
            out.append(self.event_proto(e) + ";\n")
        out.append("\n/* Every event of the schema, terminated by NULL (query-events). */\n")
        out.append("extern const char *const qapi_event_names[];\n")
        out.append("\n#endif\n")
        return "".join(out)

    def events_c(self):
        out = [HEADER, "#include <glib.h>\n#include \"qapi-events.h\"\n",
               "#include \"monitor/qapi-runtime.h\"\n\n"]
        for e in self.s.events:
            out.append(self.event_proto(e) + "\n{\n")
            if e["members"]:
                st = self.arg_struct(e)
                out.append("    %s arg = {\n" % st)
                for m in e["members"]:
                    cast = "(char *)" if m.typ == "str" else \
                        "(%s)" % self.s.ctype(m.typ) if self.s.ctype(m.typ).endswith("*") else ""
                    if m.optional:
                        out.append("        .has_%s = has_%s,\n" % (m.cname, m.cname))
                    out.append("        .%s = %s%s,\n" % (m.cname, cast, m.cname))
                out.append("    };\n    JsonNode *n = qapi_out_%s(&arg);\n" % st)
                # The node is dropped before the object is handed over: another
                # thread may deliver (and unref) it at once, and JSON-GLib's
                # reference counts are not atomic.
                out.append("    JsonObject *o = json_node_dup_object(n);\n\n"
                           "    json_node_unref(n);\n")
                out.append('    amber_emit_event(s, "%s", o);\n' % e["name"])
            else:
                out.append('    amber_emit_event(s, "%s", NULL);\n' % e["name"])
            out.append("}\n\n")
        out.append("const char *const qapi_event_names[] = {\n")
        for e in self.s.events:
            out.append('    "%s",\n' % e["name"])
        out.append("    NULL,\n};\n")
        return "".join(out)

    # -- introspection --
    def introspect_h(self):
        return (HEADER + "#ifndef AMBER_QAPI_INTROSPECT_H\n#define AMBER_QAPI_INTROSPECT_H\n\n"
                "/* query-qmp-schema's reply: a JSON array of SchemaInfo objects. */\n"
                "extern const char qapi_introspect_json[];\n\n#endif\n")

    def introspect_c(self):
        text = json.dumps(introspect(self.s), separators=(",", ":"))
        out = [HEADER, "#include \"qapi-introspect.h\"\n\n",
               "const char qapi_introspect_json[] =\n"]
        for i in range(0, len(text), 96):
            out.append('    "%s"\n' % c_string(text[i:i + 96]))
        out.append(";\n")
        return "".join(out)


# ---- introspection -----------------------------------------------------------------

JSON_TYPES = {"string": "string", "integer": "int", "boolean": "boolean",
              "number": "number", "value": "value"}


def c_string(text):
    return text.replace("\\", "\\\\").replace('"', '\\"')


def introspect(schema):
    """The schema as QEMU's query-qmp-schema reports it (SchemaInfo objects).

    As in QEMU: every integer type is "int", a command or event without
    data (or a command without a return) uses the empty object "q_empty",
    inline data is an implicit object "q_obj_NAME-arg", an array is named
    "[ELEMENT]", optional members carry "default": null, and only types
    that a command or event reaches are listed.  Names are not masked.
    """
    out, seen = [], set()

    def emit(entry):
        seen.add(entry["name"])
        out.append(entry)
        return entry["name"]

    def members(ms):
        res = []
        for m in ms:
            d = {"name": m.name, "type": use(m.typ)}
            if m.optional:
                d["default"] = None
            res.append(d)
        return res

    def obj(name, ms):
        if not ms:
            name = "q_empty"
        if name in seen:
            return name
        entry = {"name": name, "meta-type": "object", "members": []}
        emit(entry)             # first: a type that reaches itself stops here
        entry["members"] = members(ms)
        return name

    def use(typ):
        if isinstance(typ, list):
            name = "[%s]" % use(typ[0])
            if name not in seen:
                emit({"name": name, "meta-type": "array", "element-type": use(typ[0])})
            return name
        if typ in BUILTINS:
            kind = BUILTINS[typ][1]
            name = "int" if kind == "integer" else typ
            if name not in seen:
                emit({"name": name, "meta-type": "builtin", "json-type": JSON_TYPES[kind]})
            return name
        if typ in seen:
            return typ
        if typ in schema.enums:
            values = schema.enums[typ]["values"]
            return emit({"name": typ, "meta-type": "enum",
                         "members": [{"name": v} for v in values], "values": values})
        return obj(typ, schema.structs[typ]["members"])

    for c in schema.commands:
        if c["arg_struct"]:
            arg = use(c["arg_struct"])
        else:
            arg = obj("q_obj_%s-arg" % c["name"], c["members"])
        ret = use(c["returns"]) if c["returns"] is not None else obj("q_empty", [])
        emit({"name": c["name"], "meta-type": "command", "arg-type": arg, "ret-type": ret})
    for e in schema.events:
        arg = obj("q_obj_%s-arg" % e["name"], e["members"])
        emit({"name": e["name"], "meta-type": "event", "arg-type": arg})
    return out


# ---- markdown reference ------------------------------------------------------------

def md_type(schema, typ):
    if isinstance(typ, list):
        return "array of " + md_type(schema, typ[0])
    if typ in BUILTINS:
        return typ
    return "[%s](#%s)" % (typ, anchor(typ))


def anchor(name):
    return re.sub(r"[^a-z0-9-]", "", name.lower().replace("_", "-").replace(" ", "-"))


def md_doc(schema):
    out = ["# amber QMP reference\n\n",
           "Generated by `scripts/qapi-gen.py` from `qapi/*.json`; do not edit by hand\n",
           "(`ninja -C BUILD qapi-doc` refreshes this copy; a unit test checks it is\n",
           "current).  The wire protocol is QEMU's: see the first section.\n"]
    for kind, d in schema.order:
        if kind == "doc":
            out.append(md_free(d))
            continue
        out.append("\n### %s\n\n" % d["name"])
        out.append("*%s*\n\n" % kind)
        doc = d["doc"]
        if doc["body"]:
            out.append(doc["body"] + "\n\n")
        if kind == "enum":
            out.append("Values: %s\n\n" % ", ".join("`%s`" % v for v in d["values"]))
        members = d["members"] if kind != "enum" else []
        if members:
            title = {"command": "Arguments", "event": "Data", "struct": "Members"}[kind]
            out.append("%s:\n\n" % title)
            for m in members:
                opt = ", optional" if m.optional else ""
                out.append("- `%s` (%s%s): %s\n" % (m.name, md_type(schema, m.typ), opt, m.doc))
            out.append("\n")
        if kind == "command":
            ret = d["returns"]
            out.append("Returns: %s\n\n" % ("nothing (`{}`)" if ret is None
                                           else md_type(schema, ret)))
        for name, lines in doc["sections"]:
            if name in ("Example", "Examples"):
                out.append("Example:\n\n```\n%s\n```\n\n" % "\n".join(lines))
            elif name == "Returns":
                out.append("Returns: %s\n\n" % " ".join(l.strip() for l in lines))
            else:
                out.append("%s: %s\n\n" % (name, "\n".join(lines)))
    text = "".join(out)
    return re.sub(r"\n{3,}", "\n\n", text).rstrip("\n") + "\n"


def md_free(lines):
    out = []
    for line in lines:
        m = re.match(r"^(=+)\s*(.*)$", line)
        if m:
            out.append("\n%s %s\n" % ("#" * (len(m.group(1)) + 1), m.group(2)))
        else:
            out.append(line + "\n")
    return "\n" + "".join(out) + "\n"


# ---- main ------------------------------------------------------------------------

def write_if_changed(path, text):
    try:
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return
    except FileNotFoundError:
        pass
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def main(argv):
    ap = argparse.ArgumentParser(description="Generate QMP code and docs from the schema.")
    ap.add_argument("-o", "--output-dir", help="directory for the generated C files")
    ap.add_argument("--doc", help="write the markdown reference to this path")
    ap.add_argument("schema", nargs="+", help="schema files (the first one includes others)")
    args = ap.parse_args(argv)
    schema = Schema()
    try:
        for path in args.schema:
            schema.load(path)
        schema.finish()
    except (SchemaError, OSError, KeyError) as e:
        print("qapi-gen: %s" % e, file=sys.stderr)
        return 1
    if args.output_dir:
        g = CGen(schema)
        os.makedirs(args.output_dir, exist_ok=True)
        for name, text in (("qapi-types.h", g.types_h()), ("qapi-types.c", g.types_c()),
                           ("qapi-commands.h", g.commands_h()),
                           ("qapi-commands.c", g.commands_c()),
                           ("qapi-events.h", g.events_h()), ("qapi-events.c", g.events_c()),
                           ("qapi-introspect.h", g.introspect_h()),
                           ("qapi-introspect.c", g.introspect_c())):
            write_if_changed(os.path.join(args.output_dir, name), text)
    if args.doc:
        write_if_changed(args.doc, md_doc(schema))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
