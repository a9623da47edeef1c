"""A stand-in for a person's browser, for the tests: opens one address and follows every
redirect with cookies kept (the OAuth test peer logs its test user in and consents on its
own), the way `BROWSER` is run by `keyport authorize`. A page whose only purpose is to post a
form on (OpenID Connect's form post response mode, which the hybrid flow uses) is submitted,
as its script would. Standard library only; loopback only.

Usage: python3 browser.py URL"""

import html.parser
import http.cookiejar
import sys
import urllib.error
import urllib.parse
import urllib.request

LOOPBACK = ("127.0.0.1", "::1", "localhost")


class LoopbackOnly(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        host = urllib.parse.urlsplit(newurl).hostname
        if host not in LOOPBACK:
            raise SystemExit(f"browser.py: refusing to leave loopback for {host}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class PostedForm(html.parser.HTMLParser):
    """The first `<form method="post">` of a page: its action and hidden inputs."""

    def __init__(self):
        super().__init__()
        self.action = None
        self.fields = []
        self._inside = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and self.action is None and (attrs.get("method") or "").lower() == "post":
            self.action = attrs.get("action") or ""
            self._inside = True
        elif tag == "input" and self._inside and attrs.get("type") == "hidden" and attrs.get("name"):
            self.fields.append((attrs["name"], attrs.get("value") or ""))

    def handle_endtag(self, tag):
        if tag == "form":
            self._inside = False


def main():
    url = sys.argv[1]
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), LoopbackOnly()
    )
    try:
        with opener.open(url, timeout=60) as page:
            where = page.geturl()
            body = page.read().decode("utf-8", "replace")
        form = PostedForm()
        form.feed(body)
        if form.action is not None and form.fields:
            action = urllib.parse.urljoin(where, form.action)
            host = urllib.parse.urlsplit(action).hostname
            if host not in LOOPBACK:
                raise SystemExit(f"browser.py: refusing to post a form off loopback to {host}")
            data = urllib.parse.urlencode(form.fields).encode()
            with opener.open(action, data=data, timeout=60) as page:
                page.read()
    except urllib.error.HTTPError as refused:
        # The last page said no; the command that ran this browser reports why.
        print(f"browser.py: the last page answered {refused.code}", file=sys.stderr)


if __name__ == "__main__":
    main()
