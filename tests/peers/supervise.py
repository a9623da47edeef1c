"""Runs a test peer and stops it when the test process that started it goes away.

The harness keeps this script's stdin open; when the test binary exits for any reason, the
pipe closes, the read below returns, and the peer is terminated. No peer outlives its tests.
"""
import subprocess
import sys

peer = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL)
try:
    sys.stdin.read()
finally:
    peer.terminate()
    try:
        peer.wait(5)
    except subprocess.TimeoutExpired:
        peer.kill()
