"""A TCP relay on 127.0.0.1 in front of a database that a test can cut: after `cut()`,
every relayed connection is dropped and new ones are accepted, counted and left without
an answer, as a database host that went away (packets dropped) looks to a client."""

from __future__ import annotations

import socket
import threading
from contextlib import suppress


class Relay:
    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.accepted = 0  # connection attempts seen, relayed or not
        self._cut = threading.Event()
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="relay-accept", daemon=True).start()

    def _keep(self, *socks: socket.socket) -> None:
        with self._lock:
            self._socks.extend(socks)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                self.accepted += 1
            if self._cut.is_set():
                self._keep(client)  # held open, never answered
                continue
            upstream = socket.create_connection(self.target)
            self._keep(client, upstream)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        """Drop every relayed connection (RST) and answer nothing from now on."""
        self._cut.set()
        with self._lock:
            socks, self._socks = self._socks, []
        for sock in socks:
            with suppress(OSError):
                sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                sock.close()

    def close(self) -> None:
        self.cut()
        self.listener.close()
        with self._lock:
            socks, self._socks = self._socks, []
        for sock in socks:
            with suppress(OSError):
                sock.close()
