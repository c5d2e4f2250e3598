"""The connect guard the whole suite runs under: connections outside loopback raise."""

import ipaddress
import socket

original_connect = socket.socket.connect
original_connect_ex = socket.socket.connect_ex


def check_address(sock: socket.socket, address) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    host = address[0]
    try:
        loopback = ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise PermissionError(f"test tried to connect outside loopback: {address!r}")


def guarded_connect(self, address):
    check_address(self, address)
    return original_connect(self, address)


def guarded_connect_ex(self, address):
    check_address(self, address)
    return original_connect_ex(self, address)
