"""Resumable downloads (openslr archives and language models) with a progress bar and MD5 check.

usage: python data_prep/download.py URL OUT [--md5 HEX] [--mirror MIRROR]
  URL: http(s):// or file:// (a local or institutional mirror); OUT: the file to write. A
  partial OUT.part is resumed where the server honours Range requests; an existing OUT is kept.
  With --mirror (a folder, or an http(s):// or file:// URL of a folder, holding the files under
  their published names), URL is a file name in it, e.g. train-clean-100.tar.gz.
"""
import argparse
import hashlib
import os
import pathlib
import sys
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from src.errors import UserError  # noqa: E402  (after the path fix above)
from src.progress import progress  # noqa: E402


class DownloadError(UserError):
    """A download that failed in a way the user can act on."""


def md5_of(path, chunk=1 << 20):
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def mirror_url(mirror, name):
    """The URL of the file `name` in `mirror`: a folder (as a file:// URL) or the URL of one."""
    if "://" not in mirror:
        mirror = pathlib.Path(os.path.abspath(os.path.expanduser(mirror))).as_uri()
    return f"{mirror.rstrip('/')}/{urllib.parse.quote(name)}"


def download_file(url, final, md5=None, chunk=1 << 20):
    """Fetch `url` into `final` through `final`.part, resuming a partial file when the server
    honours Range requests (HTTP 206); an existing `final` is kept as it is. With `md5`, a
    mismatch removes the partial file and raises DownloadError. Returns `final`."""
    if os.path.isfile(final):
        return final
    os.makedirs(os.path.dirname(os.path.abspath(final)), exist_ok=True)
    part = final + ".part"
    have = os.path.getsize(part) if os.path.isfile(part) else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request)
    except (OSError, ValueError) as err:
        raise DownloadError(f"cannot download {url}: {err}") from None
    with response:
        resumed = bool(have) and getattr(response, "status", 200) == 206
        total = response.headers.get("Content-Length")
        total = int(total) + (have if resumed else 0) if total else None
        bar = progress(total=total, initial=have if resumed else 0, unit="B",
                       desc=f"download {os.path.basename(final)}")
        with open(part, "ab" if resumed else "wb") as f:
            for block in iter(lambda: response.read(chunk), b""):
                f.write(block)
                bar.update(len(block))
        bar.close()
    if md5:
        digest = md5_of(part, chunk)
        if digest != md5:
            os.remove(part)
            raise DownloadError(f"{url}: MD5 {digest} != published {md5}; "
                                "the partial download was removed, run again")
    os.replace(part, final)
    return final


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     usage=__doc__.split("usage: ")[1].split("\n")[0])
    parser.add_argument("url")
    parser.add_argument("out")
    parser.add_argument("--md5", default=None, help="expected MD5 of the whole file")
    parser.add_argument("--mirror", default=None,
                        help="a folder or URL holding the files: URL is then a file name in it")
    args = parser.parse_args(argv)
    url = mirror_url(args.mirror, args.url) if args.mirror else args.url
    print(download_file(url, os.path.abspath(args.out), args.md5))


if __name__ == "__main__":
    from src.cli import tool_main
    sys.exit(tool_main("download.py", main))
