"""A data-line filter that holds the whole message (filter protocol 0.7),
for smtpd/tests/filters_proc.rs.

Like filter-dkimsign, it answers nothing until the final "." and then
writes every line back at once, unchanged.
"""
import sys

held = {}
out = sys.stdout.buffer
for raw in sys.stdin.buffer:
    line = raw.rstrip(b"\n")
    if line == b"config|ready":
        out.write(b"register|filter|smtp-in|data-line\nregister|ready\n")
        out.flush()
        continue
    if not line.startswith(b"filter|"):
        continue
    fields = line.split(b"|", 7)
    phase, sid, token, param = fields[4], fields[5], fields[6], fields[7]
    if phase != b"data-line":
        out.write(b"filter-result|%s|%s|proceed\n" % (sid, token))
        out.flush()
        continue
    lines = held.setdefault((sid, token), [])
    lines.append(param)
    if param == b".":
        prefix = b"filter-dataline|%s|%s|" % (sid, token)
        for kept in held.pop((sid, token)):
            out.write(prefix + kept + b"\n")
        out.flush()
