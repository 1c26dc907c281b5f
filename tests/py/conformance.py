"""pyvmomi (VMware's SDK) reads every SOAP request the controller sent.

Input: vcsim request logs (`vcsim --request-log FILE`: one JSON object per line with the
SOAPAction header and the body of each POST /sdk). For every request, with pyvmomi's own type
information for the method it names (VmomiSupport.GetWsdlMethod):

- the envelope holds exactly one call, in the urn:vim25 namespace, of a method pyvmomi knows,
  present in the API version the SOAPAction names;
- `_this` comes first and names a managed object of the method's type (or a subtype);
- every other element is one of the method's declared parameters, in declared order, repeated
  only for arrays, with every required (non-optional) parameter present;
- every parameter value is read by pyvmomi's deserializer (SoapAdapter.Deserialize) into the
  declared type (an `xsi:type` must name a subtype), and data objects are walked the same way:
  no unknown property, properties in declared order, required properties present, each
  property in the negotiated API version.

Any violation fails. `--self-test` first proves the checks bite: hand-broken requests (two
parameters swapped, an unknown element, a missing required parameter, a wrong `_this` type, a
bad integer, swapped properties inside a data object) must each be refused.

Prints one JSON line on stdout: {"requests": N, "methods": {name: count}} (with --json);
problems go to stderr, exit status 1.

Run: python3 tests/py/conformance.py [--self-test] [--json] LOG...
"""

import argparse
import json
import sys
import xml.etree.ElementTree as ET

from pyVmomi import SoapAdapter, VmomiSupport as V

SOAPENV = "http://schemas.xmlsoap.org/soap/envelope/"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
XSD = "http://www.w3.org/2001/XMLSchema"
VIM = "urn:vim25"

ET.register_namespace("", VIM)
ET.register_namespace("xsi", XSI)
ET.register_namespace("xsd", XSD)


class Bad(Exception):
    """A request pyvmomi would not read as its method's parameters."""


def split(tag):
    if tag.startswith("{"):
        ns, name = tag[1:].split("}", 1)
        return ns, name
    return "", tag


def version_of(soap_action):
    """pyvmomi's version name for a SOAPAction such as urn:vim25/8.0.2.0."""
    action = (soap_action or "").strip().strip('"')
    if not action.startswith("urn:vim25/"):
        raise Bad(f"SOAPAction {soap_action!r} does not name a vim25 version")
    version = V.versionMap.get(action[len("urn:"):])
    if version is None:
        raise Bad(f"SOAPAction {soap_action!r} names a version pyvmomi does not know")
    return version


def fragment(el):
    """The element as a standalone document pyvmomi's deserializer can read."""
    text = ET.tostring(el, encoding="unicode")
    end = text.index(">")
    if text[end - 1] == "/":
        end -= 1
    decl = f' xmlns:xsd="{XSD}" xmlns:xsi="{XSI}"'
    head = text[:end]
    if 'xmlns:xsd=' in head:
        decl = decl.replace(f' xmlns:xsd="{XSD}"', "")
    if 'xmlns:xsi=' in head:
        decl = decl.replace(f' xmlns:xsi="{XSI}"', "")
    return text[:end] + decl + text[end:]


def xsi_type(el, declared, where):
    """The element's effective type: its xsi:type, which must narrow the declared type."""
    value = el.get(f"{{{XSI}}}type")
    if not value:
        return declared
    prefix, _, name = value.rpartition(":")
    ns = XSD if prefix == "xsd" else VIM
    try:
        dyn = V.GetWsdlType(ns, name)
    except KeyError:
        raise Bad(f"{where}: xsi:type {value!r} is not a type pyvmomi knows")
    if name == "ManagedObjectReference" and issubclass(declared, V.ManagedObject):
        return declared
    if not (declared is object or issubclass(dyn, declared)):
        raise Bad(f"{where}: xsi:type {value!r} is not a {declared.__name__}")
    return dyn


def check_value(el, typ, where, version):
    """Structure of one value (order, required, unknown) against pyvmomi's type info."""
    typ = xsi_type(el, typ, where)
    if isinstance(typ, type) and issubclass(typ, V.ManagedObject):
        kind = el.get("type")
        if not kind:
            raise Bad(f"{where}: managed object reference without a type attribute")
        try:
            actual = V.GetWsdlType(VIM, kind)
        except KeyError:
            raise Bad(f"{where}: type={kind!r} is not a managed type pyvmomi knows")
        if not issubclass(actual, typ):
            raise Bad(f"{where}: a {kind} where a {typ.__name__} is declared")
        if len(el) or not (el.text or "").strip():
            raise Bad(f"{where}: a managed object reference holds only its id")
        return
    if isinstance(typ, type) and issubclass(typ, V.DataObject):
        check_sequence(list(el), typ._GetPropertyList(), where, version)
        return
    if len(el):
        raise Bad(f"{where}: a {getattr(typ, '__name__', typ)} value has child elements")


def check_sequence(elems, props, where, version):
    """Elements against declared properties or parameters: known, in order, required present."""
    index = {p.name: i for i, p in enumerate(props)}
    last = -1
    seen = set()
    for el in elems:
        ns, name = split(el.tag)
        here = f"{where}/{name}"
        if ns not in ("", VIM):
            raise Bad(f"{here}: element in namespace {ns!r}")
        if name not in index:
            raise Bad(f"{here}: unknown element <{name}> (declared: {', '.join(p.name for p in props)})")
        i = index[name]
        prop = props[i]
        is_list = isinstance(prop.type, type) and issubclass(prop.type, list)
        if i < last:
            raise Bad(f"{here}: <{name}> is out of order: it comes after <{props[last].name}>, "
                      f"but is declared before it ({', '.join(p.name for p in props)})")
        if i == last and not is_list:
            raise Bad(f"{here}: <{name}> repeated, but it is not an array")
        if not V.IsChildVersion(version, prop.version):
            raise Bad(f"{here}: <{name}> is not in API version {version} (added in {prop.version})")
        last = i
        seen.add(name)
        item = prop.type.Item if is_list else prop.type
        check_value(el, item, here, version)
        try:
            SoapAdapter.Deserialize(fragment(el), item)
        except Exception as e:  # pyvmomi's own reading of the value
            raise Bad(f"{here}: pyvmomi cannot read it as {getattr(item, '__name__', item)}: {e!r}")
    for p in props:
        if p.name not in seen and not (p.flags & V.F_OPTIONAL):
            raise Bad(f"{where}: required <{p.name}> is missing")


def check_request(body, soap_action):
    """Validate one request; returns its method name."""
    version = version_of(soap_action)
    try:
        root = ET.fromstring(body)
    except ET.ParseError as e:
        raise Bad(f"not XML: {e}")
    if root.tag != f"{{{SOAPENV}}}Envelope":
        raise Bad(f"root is {root.tag}, not a SOAP Envelope")
    bodies = [c for c in root if c.tag == f"{{{SOAPENV}}}Body"]
    if len(bodies) != 1 or len(bodies[0]) != 1:
        raise Bad("the envelope must hold one Body with one call")
    call = bodies[0][0]
    ns, name = split(call.tag)
    if ns != VIM:
        raise Bad(f"<{name}> is in namespace {ns!r}, not urn:vim25")
    try:
        info = V.GetWsdlMethod(VIM, name).info
    except KeyError:
        raise Bad(f"pyvmomi knows no vim25 method {name}")
    if not V.IsChildVersion(version, info.version):
        raise Bad(f"{name} is not in API version {version}")
    children = list(call)
    if not children or split(children[0].tag)[1] != "_this":
        raise Bad(f"{name}: <_this> must come first")
    check_value(children[0], V.GetVmodlType(info.typeName), f"{name}/_this", version)
    check_sequence(children[1:], list(info.params), name, version)
    return name


def read_logs(paths):
    for path in paths:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                entry = json.loads(line)
                if entry.get("http") == "POST /sdk":
                    yield f"{path}:{n}", entry


GOOD = (
    '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/" '
    'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>{}</soapenv:Body></soapenv:Envelope>'
)
AUTH = ('<auth xsi:type="NamePasswordAuthentication"><interactiveSession>false</interactiveSession>'
        '<username>root</username><password>x</password></auth>')
VM = '<vm type="VirtualMachine">vm-1</vm>'
SPEC = ('<spec xsi:type="GuestProgramSpec"><programPath>/bin/true</programPath><arguments>-x</arguments>'
        '<envVariables>A=1</envVariables></spec>')
PM = '<_this type="GuestProcessManager">guestOperationsProcessManager</_this>'


def start(inner, this=PM):
    return GOOD.format(f'<StartProgramInGuest xmlns="urn:vim25">{this}{inner}</StartProgramInGuest>')


SELF_TEST = [
    ("good", start(VM + AUTH + SPEC), None),
    ("auth and spec swapped", start(VM + SPEC + AUTH), "out of order"),
    ("vm and auth swapped", start(AUTH + VM + SPEC), "out of order"),
    ("unknown element", start(VM + AUTH + SPEC + "<bogus>1</bogus>"), "unknown element"),
    ("required vm missing", start(AUTH + SPEC), "required <vm>"),
    ("wrong _this type", start(VM + AUTH + SPEC, '<_this type="GuestFileManager">f</_this>'), "GuestFileManager"),
    ("spec fields swapped", start(VM + AUTH + SPEC.replace(
        "<programPath>/bin/true</programPath><arguments>-x</arguments>",
        "<arguments>-x</arguments><programPath>/bin/true</programPath>")), "out of order"),
    ("auth fields swapped", start(VM + AUTH.replace(
        "<interactiveSession>false</interactiveSession><username>root</username>",
        "<username>root</username><interactiveSession>false</interactiveSession>") + SPEC), "out of order"),
    ("not an integer", GOOD.format(
        f'<TerminateProcessInGuest xmlns="urn:vim25">{PM}{VM}{AUTH}<pid>abc</pid></TerminateProcessInGuest>'),
     "cannot read"),
    ("scalar repeated", GOOD.format(
        f'<TerminateProcessInGuest xmlns="urn:vim25">{PM}{VM}{AUTH}<pid>1</pid><pid>2</pid></TerminateProcessInGuest>'),
     "repeated"),
    ("unknown method", GOOD.format(f'<StartProgramInGuestX xmlns="urn:vim25">{PM}</StartProgramInGuestX>'),
     "no vim25 method"),
]


def self_test():
    failures = []
    for name, body, expect in SELF_TEST:
        try:
            check_request(body, '"urn:vim25/8.0.2.0"')
            got = None
        except Bad as e:
            got = str(e)
        if expect is None and got is not None:
            failures.append(f"{name}: refused a good request: {got}")
        elif expect is not None and (got is None or expect not in got):
            failures.append(f"{name}: expected a refusal mentioning {expect!r}, got {got!r}")
        else:
            print(f"self-test {name}: {'accepted' if got is None else 'refused: ' + got}", file=sys.stderr)
    try:
        version_of('"urn:vim25/uA046D008"')
        failures.append("an unknown SOAPAction version was accepted")
    except Bad:
        pass
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--self-test", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("logs", nargs="*")
    a = ap.parse_args()
    problems = self_test() if a.self_test else []
    methods = {}
    n = 0
    for where, entry in read_logs(a.logs):
        n += 1
        try:
            m = check_request(entry.get("body", ""), entry.get("soap_action"))
            methods[m] = methods.get(m, 0) + 1
        except Bad as e:
            problems.append(f"{where} ({entry.get('method')}): {e}")
    for p in problems:
        print(f"NONCONFORMING: {p}", file=sys.stderr)
    if a.json:
        print(json.dumps({"requests": n, "methods": methods, "problems": len(problems)}))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
