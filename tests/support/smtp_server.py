"""A real SMTP server on loopback for ward's notification tests (aiosmtpd).

Usage: smtp_server.py --out DIR [--tls CERT KEY] [--auth USER PASSWORD]

Prints `READY <port>` once it listens on 127.0.0.1, then writes each mail
it accepts to DIR/NNN.json (envelope, raw message, whether the session
used TLS, the user that logged in), atomically. With --tls it offers
STARTTLS and refuses mail without it; with --auth it requires a login
(only after STARTTLS, as aiosmtpd does by default).
"""

import argparse
import asyncio
import itertools
import json
import logging
import os
import ssl
import sys
import warnings

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    ap.add_argument("--auth", nargs=2, metavar=("USER", "PASSWORD"))
    args = ap.parse_args()
    # A refused handshake is what some tests want: no tracebacks for it.
    logging.getLogger("mail.log").setLevel(logging.CRITICAL)
    warnings.simplefilter("ignore")
    counter = itertools.count(1)

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            record = {
                "mail_from": envelope.mail_from,
                "rcpt_tos": envelope.rcpt_tos,
                "data": envelope.content.decode("utf-8", "replace"),
                "tls": session.ssl is not None,
                "login": session.auth_data.decode() if isinstance(session.auth_data, bytes) else session.auth_data,
            }
            n = next(counter)
            path = os.path.join(args.out, "%03d.json" % n)
            with open(path + ".tmp", "w") as f:
                json.dump(record, f)
            os.rename(path + ".tmp", path)
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            args.auth is not None
            and isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == args.auth[0]
            and auth_data.password.decode() == args.auth[1]
        )
        return AuthResult(success=ok, auth_data=auth_data.login if ok else None)

    kwargs = {}
    if args.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls[0], args.tls[1])
        kwargs.update(tls_context=ctx, require_starttls=True)
    if args.auth:
        kwargs.update(authenticator=authenticator, auth_required=True)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(
        loop.create_server(
            lambda: SMTP(Handler(), hostname="smtp.test", **kwargs),
            host="127.0.0.1",
            port=0,
        )
    )
    port = server.sockets[0].getsockname()[1]
    print("READY %d" % port, flush=True)
    loop.run_forever()


if __name__ == "__main__":
    sys.exit(main())
