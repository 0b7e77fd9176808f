"""A real SMTP server for Falconer's e-mail tests: aiosmtpd on 127.0.0.1, on a free port.

Prints `READY <port>` once listening and exits when its standard input closes (the test
ended). Each accepted message is written to --maildir as `<n>.json` (written to a temporary
name, then renamed): the envelope, the raw message, and what Python's own MIME parser reads
from it (headers, the text and HTML parts).

  --cert/--key      serve STARTTLS (required before MAIL) with this certificate
  --implicit-tls    TLS from the first byte instead (port-465 style)
  --user/--password require AUTH (PLAIN or LOGIN) with these credentials
  --answer ADDR=CODE TEXT   answer RCPT TO:<ADDR> with this reply, e.g. `x@y=550 5.1.1 no such user`
"""

import argparse
import asyncio
import email
import email.policy
import json
import os
import ssl
import sys
import threading

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Handler:
    def __init__(self, maildir, answers):
        self.maildir = maildir
        self.answers = answers
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        answer = self.answers.get(address.lower())
        if answer:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        text = message.get_body(preferencelist=("plain",))
        html = message.get_body(preferencelist=("html",))
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "tls": session.ssl is not None
            or server.transport.get_extra_info("ssl_object") is not None,
            "authenticated": bool(session.authenticated),
            "content_type": message.get_content_type(),
            "headers": {k: str(v) for k, v in message.items()},
            "text": text.get_content() if text is not None else None,
            "html": html.get_content() if html is not None else None,
            "raw": raw.decode("utf-8", "replace"),
        }
        self.count += 1
        path = os.path.join(self.maildir, f"{self.count:04}.json")
        with open(path + ".tmp", "w", encoding="utf-8") as out:
            json.dump(record, out)
        os.replace(path + ".tmp", path)
        return "250 2.0.0 Message accepted for delivery"


def authenticator(user, password):
    def check(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        # handled=False: aiosmtpd itself answers `535 5.7.8 Authentication credentials invalid`.
        return AuthResult(success=ok, handled=False)

    return check


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--maildir", required=True)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--implicit-tls", action="store_true")
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--answer", action="append", default=[])
    args = parser.parse_args()

    answers = {}
    for spec in args.answer:
        address, reply = spec.split("=", 1)
        answers[address.lower()] = reply
    handler = Handler(args.maildir, answers)

    context = None
    if args.cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)

    kwargs = {"hostname": "smtp.falconer.test", "ident": "Falconer test SMTP"}
    if context is not None and not args.implicit_tls:
        kwargs.update(tls_context=context, require_starttls=True)
    if args.user:
        kwargs.update(
            authenticator=authenticator(args.user, args.password or ""),
            auth_required=True,
            # With implicit TLS the connection is encrypted from the start.
            auth_require_tls=not args.implicit_tls,
        )

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(
        loop.create_server(
            lambda: SMTP(handler, loop=loop, **kwargs),
            "127.0.0.1",
            0,
            ssl=context if args.implicit_tls else None,
        )
    )
    print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)

    def watch_stdin():
        sys.stdin.read()
        loop.call_soon_threadsafe(loop.stop)

    threading.Thread(target=watch_stdin, daemon=True).start()
    loop.run_forever()


if __name__ == "__main__":
    main()
