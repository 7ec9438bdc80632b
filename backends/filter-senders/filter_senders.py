#!/usr/bin/env python3
"""filter-senders: a sender-domain policy for smtpd (filter protocol 0.7).

    python3 filter_senders.py POLICY-FILE

    filter policy proc-exec "/path/to/venv/bin/python /path/to/filter_senders.py /etc/mail/senders"
    listen on eth0 filter policy

At ``mail-from`` the sender's domain is looked up in the policy file; a
denied sender gets ``550 5.7.1 Sender domain not allowed``. Every message
of an allowed sender gets a first header line saying why it was allowed::

    X-Sender-Policy: allow; domain=example.org; rule="allow *.example.org"

The policy file holds one rule per line (``#`` starts a comment)::

    allow example.org        # exactly this domain
    allow *.example.org      # any subdomain (not example.org itself)
    deny  spam.example
    deny  <>                 # the null sender (bounces); allowed by default
    default deny             # for domains no rule names (default: allow)

Domains are compared without case. The most specific rule wins: an exact
domain before any wildcard, a longer wildcard before a shorter one. The
file is read again when its modification time changes; a file that became
invalid is reported on stderr and the previous policy stays in force. An
invalid file at start-up stops the filter (``FILE:LINE: message``, exit 1)
before it registers.

Standard library only, with the project's Python SDK (``smtpd_sdk``): run it
with a Python where ``sdk-python`` is installed, or with ``PYTHONPATH``
pointing at ``sdk-python/src``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from smtpd_sdk import filter
from smtpd_sdk.filter import Decision, Session

REJECT_REPLY = "550 5.7.1 Sender domain not allowed"
"""The reply to a denied sender."""

HEADER = "X-Sender-Policy"
"""The header stamped on the messages of allowed senders."""

NULL_SENDER = "<>"
"""The rule target that stands for the null sender."""


def _log(message: str) -> None:
    """One diagnostic line on stderr, which the daemon logs."""
    sys.stderr.write(message.replace("\n", " ") + "\n")
    sys.stderr.flush()


class PolicyError(ValueError):
    """A policy file that cannot be used, with ``FILE:LINE:`` in front."""


@dataclass(frozen=True)
class Rule:
    """One ``allow``/``deny`` line."""

    verdict: str
    """``allow`` or ``deny``."""
    target: str
    """The domain as written (lower-cased): ``example.org``, ``*.example.org`` or ``<>``."""

    def __str__(self) -> str:
        return "%s %s" % (self.verdict, self.target)


@dataclass
class Policy:
    """The rules of one policy file."""

    exact: Dict[str, Rule] = field(default_factory=dict)
    """Rules for one domain (and ``<>``), by domain."""
    wildcards: List[Tuple[str, Rule]] = field(default_factory=list)
    """``*.suffix`` rules as ``(".suffix", rule)``, longest suffix first."""
    default: str = "allow"
    """The verdict for domains no rule names."""

    def decide(self, sender: str) -> Tuple[str, Optional[Rule], str]:
        """``(verdict, rule or None, domain)`` for a sender address
        (``user@domain``; empty for the null sender)."""
        if not sender:
            domain = NULL_SENDER
        else:
            domain = sender.rpartition("@")[2].lower().rstrip(".")
        rule = self.exact.get(domain)
        if rule is None and domain != NULL_SENDER:
            rule = next((r for suffix, r in self.wildcards if domain.endswith(suffix)), None)
        if rule is None:
            default = "allow" if domain == NULL_SENDER else self.default
            return default, None, domain
        return rule.verdict, rule, domain


def _valid_domain(domain: str) -> bool:
    if not domain or len(domain) > 253 or domain.startswith(".") or domain.endswith("."):
        return False
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789-.")
    return all(c in allowed for c in domain) and ".." not in domain


def parse_policy(text: str, name: str = "policy") -> Policy:
    """The policy in ``text``; raises :class:`PolicyError` naming
    ``name:LINE`` for the first bad line."""
    policy = Policy()
    wildcards: Dict[str, Rule] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        words = raw.split("#", 1)[0].split()
        if not words:
            continue

        def fail(message: str) -> PolicyError:
            return PolicyError("%s:%d: %s" % (name, number, message))

        if len(words) != 2:
            raise fail("expected `allow DOMAIN`, `deny DOMAIN` or `default allow|deny`, got %r" % raw.strip())
        keyword, value = words[0].lower(), words[1].lower()
        if keyword == "default":
            if value not in ("allow", "deny"):
                raise fail("default must be allow or deny, not %r" % words[1])
            policy.default = value
            continue
        if keyword not in ("allow", "deny"):
            raise fail("unknown keyword %r: expected allow, deny or default" % words[0])
        rule = Rule(keyword, value)
        if value == NULL_SENDER:
            key = value
        elif value.startswith("*.") and _valid_domain(value[2:]):
            key = value[1:]
        elif _valid_domain(value):
            key = value
        else:
            raise fail("%r is not a domain, *.domain or <>" % words[1])
        table = wildcards if key.startswith(".") else policy.exact
        if key in table:
            raise fail("%s is already given a rule (%s)" % (value, table[key]))
        table[key] = rule
    policy.wildcards = sorted(wildcards.items(), key=lambda item: -len(item[0]))
    return policy


class PolicyFile:
    """A policy file, read again when its modification time changes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.stamp = self._stamp()
        self.policy = self._read()

    def _stamp(self) -> Tuple[int, int]:
        st = os.stat(self.path)
        return (st.st_mtime_ns, st.st_size)

    def _read(self) -> Policy:
        with open(self.path, encoding="utf-8") as f:
            return parse_policy(f.read(), self.path)

    def current(self) -> Policy:
        """The policy in force, re-read first if the file changed."""
        try:
            stamp = self._stamp()
            if stamp != self.stamp:
                self.stamp = stamp
                self.policy = self._read()
                _log("%s: policy reloaded" % self.path)
        except (OSError, UnicodeDecodeError, PolicyError) as e:
            _log("%s: keeping the previous policy: %s" % (self.path, e))
        return self.policy


def stamp(verdict: str, rule: Optional[Rule], domain: str) -> str:
    """The header line for an allowed sender."""
    why = 'rule="%s"' % rule if rule is not None else "rule=default"
    return "%s: %s; domain=%s; %s" % (HEADER, verdict, domain, why)


class SenderFilter:
    """The callbacks: ``mail-from`` decides, data-lines get the stamp."""

    def __init__(self, policy: PolicyFile) -> None:
        self.policy = policy

    def mail_from(self, session: Session, sender: str) -> Decision:
        verdict, rule, domain = self.policy.current().decide(sender)
        if verdict == "deny":
            session.data.pop("stamp", None)
            return filter.reject(REJECT_REPLY)
        session.data["stamp"] = stamp(verdict, rule, domain)
        return filter.proceed()

    def data_line(self, session: Session, line: bytes) -> List[bytes]:
        header = session.data.pop("stamp", None)
        if header is None:
            return [line]
        return [header.encode("utf-8"), line]


def main(argv: Optional[List[str]] = None) -> int:
    """Loads the policy named on the command line and filters until stdin
    ends."""
    args = sys.argv[1:] if argv is None else argv
    if args in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    if len(args) != 1 or args[0].startswith("-"):
        sys.stderr.write("usage: filter_senders.py POLICY-FILE\n")
        return 1
    try:
        policy = PolicyFile(args[0])
    except (OSError, UnicodeDecodeError, PolicyError) as e:
        sys.stderr.write("filter-senders: %s\n" % e)
        return 1
    senders = SenderFilter(policy)
    filter.run(phases={"mail-from": senders.mail_from}, data_line=senders.data_line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
