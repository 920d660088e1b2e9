#!/usr/bin/env python3
"""Streaming figures for bench/stream.sh (issue 14, target 7).

  stream.py serve CERT KEY PORT      an HTTPS upstream: GET /sse sends one event at once, then
                                     one every 50 ms (5 in all); GET /big?mib=N streams N MiB
  stream.py ttfe URL CA [PROXY]      time from sending GET /sse to reading its first event, on a
                                     connection already open (20 requests; prints JSON)

PROXY is http://user:pass@host:port (CONNECT, credentials as Proxy-Authorization)."""
import base64, http.client, http.server, json, socketserver, ssl, statistics, sys, time
from urllib.parse import urlsplit, parse_qs


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # each event leaves at once (no 40 ms Nagle wait)

    def log_message(self, *a):
        pass

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def do_GET(self):
        u = urlsplit(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream" if u.path == "/sse" else "application/octet-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if u.path == "/sse":
            for i in range(5):
                if i:
                    time.sleep(0.05)
                self.chunk(b"data: event %d\n\n" % i)
        else:
            block = b"x" * 65536
            for _ in range(int(parse_qs(u.query).get("mib", ["64"])[0]) * 16):
                self.chunk(block)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def serve(cert, key, port):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv = Server(("127.0.0.1", int(port)), Handler)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.serve_forever()


def ttfe(url, ca, proxy=None):
    u = urlsplit(url)
    ctx = ssl.create_default_context(cafile=ca)
    if proxy:
        p = urlsplit(proxy)
        conn = http.client.HTTPSConnection(p.hostname, p.port, context=ctx, timeout=10)
        auth = base64.b64encode(f"{p.username}:{p.password}".encode()).decode()
        conn.set_tunnel(u.hostname, u.port, headers={"Proxy-Authorization": f"Basic {auth}"})
    else:
        conn = http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=10)
    samples, whole = [], []
    for i in range(21):
        t0 = time.perf_counter()
        conn.request("GET", "/sse")
        r = conn.getresponse()
        line = r.readline()
        while line and not line.startswith(b"data:"):
            line = r.readline()
        t1 = time.perf_counter()
        r.read()
        t2 = time.perf_counter()
        if i:  # the first request opens the connection (and the tunnel)
            samples.append((t1 - t0) * 1000)
            whole.append((t2 - t0) * 1000)
    print(json.dumps({"first_event_ms_p50": statistics.median(samples), "first_event_ms_max": max(samples),
                      "whole_stream_ms_p50": statistics.median(whole)}))


if __name__ == "__main__":
    {"serve": serve, "ttfe": ttfe}[sys.argv[1]](*sys.argv[2:])
