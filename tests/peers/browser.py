"""A stand-in for a person's browser, for the tests: opens one address and follows every
redirect with cookies kept (the OAuth test peer logs its test user in and consents on its
own), the way `BROWSER` is run by `keyport authorize`. Standard library only; loopback only.

Usage: python3 browser.py URL"""

import http.cookiejar
import sys
import urllib.error
import urllib.parse
import urllib.request


class LoopbackOnly(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        host = urllib.parse.urlsplit(newurl).hostname
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise SystemExit(f"browser.py: refusing to leave loopback for {host}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def main():
    url = sys.argv[1]
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), LoopbackOnly()
    )
    try:
        with opener.open(url, timeout=60) as page:
            page.read()
    except urllib.error.HTTPError as refused:
        # The last page said no; the command that ran this browser reports why.
        print(f"browser.py: the last page answered {refused.code}", file=sys.stderr)


if __name__ == "__main__":
    main()
