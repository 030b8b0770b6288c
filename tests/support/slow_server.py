"""Hostile servers on loopback for ward's notification tests.

Usage: slow_server.py MODE

Prints `READY <port>` once it listens on 127.0.0.1, then serves every
connection on a thread of its own:

- `trickle`: answers whatever it is sent with an endless line, one byte
  every 0.7 s (an HTTP status line, or an SMTP greeting, that never ends).
- `smtp-echo`: an SMTP server that offers AUTH PLAIN and LOGIN and refuses
  every login by repeating, in its error reply, the line it was sent (as a
  careless or hostile server might).
"""

import socket
import sys
import threading
import time


def trickle(conn):
    conn.sendall(b"HTTP/1.1 2")
    while True:
        time.sleep(0.7)
        conn.sendall(b"0")


def smtp_echo(conn):
    f = conn.makefile("rb")
    conn.sendall(b"220 smtp.test ESMTP\r\n")
    while True:
        line = f.readline()
        if not line:
            return
        text = line.rstrip(b"\r\n")
        verb = text.split(b" ")[0].upper()
        if verb in (b"EHLO", b"HELO"):
            conn.sendall(b"250-smtp.test\r\n250 AUTH PLAIN LOGIN\r\n")
        elif verb == b"AUTH" and text.upper().startswith(b"AUTH LOGIN"):
            conn.sendall(b"334 VXNlcm5hbWU6\r\n")
            user = f.readline().rstrip(b"\r\n")
            conn.sendall(b"334 UGFzc3dvcmQ6\r\n")
            pw = f.readline().rstrip(b"\r\n")
            conn.sendall(b"535 5.7.8 refused " + user + b" " + pw + b"\r\n")
        elif verb == b"AUTH":
            conn.sendall(b"535 5.7.8 refused: " + text + b"\r\n")
        elif verb == b"QUIT":
            conn.sendall(b"221 bye\r\n")
            return
        else:
            conn.sendall(b"503 5.5.1 no\r\n")


def serve(mode, conn):
    try:
        {"trickle": trickle, "smtp-echo": smtp_echo}[mode](conn)
    except OSError:
        pass
    finally:
        conn.close()


def main():
    mode = sys.argv[1]
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    print("READY %d" % sock.getsockname()[1], flush=True)
    while True:
        conn, _ = sock.accept()
        threading.Thread(target=serve, args=(mode, conn), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
