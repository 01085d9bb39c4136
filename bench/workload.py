"""A fixed, generated workload of seed-like feeds, shared by the benchmarks.

200 RSS feeds × 30 items; each body is 3–6 KB of HTML shaped like the Sina seed
(full-width indented paragraphs, comments, a <style> block, the QR promo, images).
The generator is seeded, so every run measures the same bytes.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

import urllib3

if TYPE_CHECKING:
    from aggregator.store import Store
    from aggregator.store.records import EntryRow

FEEDS = 200
ITEMS = 30
PROMO = """<!-- 文末二维码 start -->
            <style>
            .appendQr_wrap{border:1px solid #E6E6E6;padding:8px;}
            .appendQr_normal{float:left;}
            </style>
            <div class="clearfix appendQr_wrap">
                <div class="appendQr_normal"><img src="https://n.sinaimg.cn/finance/cece9e13/20200514/343233024.png" referrerpolicy="no-referrer"></div>
                <div class="appendQr_normal_txt">海量资讯、精准解读，尽在新浪财经APP</div>
            </div>
<!-- 编辑姓名及工作代码 -->
<p class="article-editor">责任编辑：李墨轩 </p>"""
WORDS = (
    "数字化转型 创新基地 智慧城市 政企合作 营商环境 应用场景 产业合作 新基建 生产力 "
    "经济 生活 治理 企业 上海 虹口 平台 技术 发展 市场 投资 金融 政策 数据 服务"
).split()


def _paragraph(rng: random.Random) -> str:
    sentence = "，".join("".join(rng.choices(WORDS, k=rng.randint(2, 4))) for _ in range(4))
    extra = ""
    if rng.random() < 0.15:
        extra = f'<a href="/doc/{rng.randint(1, 10**6)}.shtml?utm_source=rss">相关阅读</a>'
    return f'<p cms-style="font-L">　　{sentence}。{extra}</p>'


def _body(rng: random.Random) -> str:
    target = rng.randint(3000, 6000)
    parts = ['<p class="ori_titlesource">　　原标题：示例</p>']
    size = len(PROMO.encode())
    while size < target:
        if rng.random() < 0.1:
            n = rng.randint(1, 10**6)
            block = (
                f'<p><img data-src="https://n.sinaimg.cn/spider/{n}.jpg" '
                f'src="/blank.gif" alt="图"></p>'
            )
        else:
            block = _paragraph(rng)
        parts.append(block)
        size += len(block.encode())
    parts.append("<!-- news_keyword_pub,stock, -->\n\n\n<!-- 正文下iframe -->\n")
    parts.append(PROMO)
    return "\n".join(parts)


def feed_document(index: int) -> bytes:
    """The RSS document of feed ``index`` (deterministic)."""
    rng = random.Random(index)
    start = datetime(2021, 10, 12, 9, 0, tzinfo=UTC)
    items = []
    for n in range(ITEMS):
        when = format_datetime(start - timedelta(minutes=17 * n + index), usegmt=True)
        url = f"https://finance.sina.com.cn/china/feed{index}/doc-{n:04d}.shtml"
        title = "".join(rng.choices(WORDS, k=4)) + f" 第{index}-{n}号"
        items.append(
            f"<item><title><![CDATA[{title}]]></title>"
            f"<description><![CDATA[{_body(rng)}]]></description>"
            f'<pubDate>{when}</pubDate><guid isPermaLink="false">{url}</guid>'
            f"<link>{url}</link></item>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>'
        f"<title><![CDATA[新浪财经－频道{index}]]></title>"
        "<link>http://finance.sina.com.cn/china/</link>"
        f"<description>bench</description>{''.join(items)}</channel></rss>"
    ).encode()


def write_feeds(
    folder: Path,
    feeds: int = FEEDS,
    document: Callable[[int], bytes] = feed_document,
    digits: int = 3,
) -> list[Path]:
    """Write ``feeds`` feed files (``document(index)``) into ``folder``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(feeds):
        path = folder / f"feed-{index:0{digits}d}.xml"
        path.write_bytes(document(index))
        paths.append(path)
    return paths


def store_entries(store: Store, rows: Iterable[EntryRow], batch: int = 5000) -> None:
    """Write generated index rows, ``batch`` to a transaction."""
    iterator = iter(rows)
    while chunk := list(islice(iterator, batch)):
        with store.transaction() as conn:
            store.upsert_entries(conn, chunk)


def seed_source(index: int) -> list[str]:
    """A source's lines after its URL: the seed article's categories and removals."""
    return [
        f"    categories: [金融, 新浪财经, 频道{index}]",
        "    remove: ['.appendQr_wrap', '.ori_titlesource', '.article-editor']",
    ]


def config_text(
    paths: list[Path], workdir: Path, source: Callable[[int], list[str]] = seed_source
) -> str:
    """A config.yaml polling the given local feeds into ``workdir``; ``source`` gives
    each source's lines after its URL."""
    lines = [
        "settings:",
        f"  posts_dir: {workdir / 'posts'}",
        f"  database: {workdir / 'index.sqlite'}",
        f"  fetch: {{file_roots: [{paths[0].parent}]}}",
        "sources:",
    ]
    for index, path in enumerate(paths):
        lines += [f"  - url: {path}", *source(index)]
    return "\n".join(lines) + "\n"


NGINX_CONF = """
user root;
worker_processes 1;
worker_rlimit_nofile {files};
daemon off;
pid {root}/nginx.pid;
error_log {root}/nginx-error.log;
events {{ worker_connections {connections}; }}
http {{
    access_log off;
    client_body_temp_path {root}/tmp-body;
    proxy_temp_path {root}/tmp-proxy;
    fastcgi_temp_path {root}/tmp-fastcgi;
    uwsgi_temp_path {root}/tmp-uwsgi;
    scgi_temp_path {root}/tmp-scgi;
    keepalive_requests 100000;
    server {{
        listen {listen};
        root {root}/www;
        default_type application/rss+xml;
        etag on;
        {locations}
    }}
}}
"""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_tool(name: str) -> str:
    """The path of command ``name``, its Debian package (same name) installed with
    apt-get on first use."""
    found = shutil.which(name) or (
        f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None
    )
    if found:
        return found
    print(f"installing Debian's {name} (apt-get) ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", name], check=True, env=env)
    if name == "nginx":
        subprocess.run(["pkill", "-x", "nginx"], check=False)  # the package starts one on :80
    return shutil.which(name) or f"/usr/sbin/{name}"


def ensure_nginx() -> str:
    """Debian's nginx, installed on first use; its path."""
    return ensure_tool("nginx")


def start_nginx(
    root: Path,
    port: int,
    *,
    listen: str | None = None,
    locations: str = "",
    connections: int = 1024,
    probe: str = "feed-000.xml",
) -> subprocess.Popen[bytes]:
    """Start nginx serving ``root/www`` (static files with ETag and Last-Modified, so
    conditional GETs get 304s) and wait until ``probe`` answers; the caller stops it.

    Args:
        listen: nginx's ``listen`` value; default 127.0.0.1:port. A bare port binds every
            address, so all of 127.0.0.0/8 reaches it (thousands of distinct hosts).
        locations: extra ``location`` blocks inside the server.
        connections: worker_connections (each client keeps its connections alive).
        probe: a file under www/ that must exist.
    """
    conf = root / "nginx.conf"
    text = NGINX_CONF.format(
        root=root,
        listen=listen or f"127.0.0.1:{port}",
        locations=locations,
        connections=connections,
        files=2 * connections + 64,
    )
    conf.write_text(text, encoding="utf-8")
    process = subprocess.Popen(
        [ensure_nginx(), "-c", str(conf), "-p", str(root)], stderr=subprocess.DEVNULL
    )
    http = urllib3.PoolManager()
    for _ in range(100):
        try:
            http.request("GET", f"http://127.0.0.1:{port}/{probe}", retries=False)
            return process
        except urllib3.exceptions.HTTPError:
            time.sleep(0.05)
    process.terminate()
    raise SystemExit("nginx did not start")
