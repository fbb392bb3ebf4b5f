"""CIBA under a real ``idp serve`` (gunicorn's gevent worker): the ping is sent from the
background queue as a greenlet, and the inbox socket pushes the request, as in
production. (The other CIBA tests use the threaded test server, on both backends.)"""

from __future__ import annotations

import http.server
import json
import threading

import requests

from cluster import seeded_idp
from support import enroll_phone

CIBA = "urn:openid:params:grant-type:ciba"


def test_a_ping_and_the_inbox_under_idp_serve(tmp_path):
    received: list[tuple[str | None, dict]] = []
    arrived = threading.Event()

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append((self.headers.get("Authorization"), body))
            arrived.set()
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=receiver.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{receiver.server_address[1]}/notify"
    idp, client_id, secret = seeded_idp(
        tmp_path, "https://bank.example", "Bank", ciba_mode="ping",
        ciba_notification_endpoint=endpoint,
    )  # fmt: skip
    try:
        phone = enroll_phone(idp.url, tmp_path / "phone")
        ws = phone.inbox_socket()
        assert json.loads(ws.receive(timeout=10)) == {"inbox": []}
        answer = requests.post(
            f"{idp.url}/bc-authorize",
            data={"scope": "openid", "login_hint": "alice", "client_notification_token": "t0k"},
            auth=(client_id, secret),
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        [item] = json.loads(ws.receive(timeout=10))["inbox"]
        ws.close()
        phone.open_request(item["id"])
        phone.approve(item["id"])
        assert arrived.wait(10), idp.log_text()
        auth_req_id = answer.json()["auth_req_id"]
        assert received == [("Bearer t0k", {"auth_req_id": auth_req_id})]
        tokens = requests.post(
            f"{idp.url}/token",
            data={"grant_type": CIBA, "auth_req_id": auth_req_id},
            auth=(client_id, secret),
            timeout=10,
        )
        assert tokens.status_code == 200, tokens.text
    finally:
        idp.stop()
        receiver.shutdown()
        thread.join(timeout=5)
