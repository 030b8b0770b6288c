"""A real HTTP server on loopback for ward's ping tests.

Usage: http_server.py LOG [CERT KEY]

Prints `READY <port>` once it listens on 127.0.0.1; appends the method
and path of every request to LOG, one line each, as it arrives. Paths
under /status/NNN answer with that status, /slow/ answers after 5 s,
everything else 200. With CERT and KEY it speaks HTTPS.
"""

import http.server
import ssl
import sys
import threading
import time


def main():
    log = sys.argv[1]
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            with lock, open(log, "a") as f:
                f.write("%s %s\n" % (self.command, self.path))
            code = 200
            if self.path.startswith("/status/"):
                code = int(self.path.split("/")[2])
            if self.path.startswith("/slow/"):
                time.sleep(5)
            body = b"OK\n"
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if len(sys.argv) > 3:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[2], sys.argv[3])
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print("READY %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
