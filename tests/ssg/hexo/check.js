// Loads the site in the current folder with Hexo and prints one JSON line per post:
// what Hexo made of the front matter, and what its Markdown renderer made of the body.
"use strict";
const Hexo = require("hexo");

const hexo = new Hexo(process.cwd(), { silent: true });
hexo.init()
  .then(() => hexo.load())
  .then(() => {
    for (const post of hexo.locals.get("posts").toArray()) {
      const html = post.content;
      console.log(JSON.stringify({
        source: post.source,
        title: post.title,
        date: post.date.toISOString(),
        categories: post.categories.map((c) => c.name),
        tags: post.tags.map((t) => t.name),
        codeBlocks: (html.match(/<pre>/g) || []).length,
        paragraphs: (html.match(/<p>/g) || []).length,
        templateLeft: /\{\{|\{%/.test(html),
        link: post.link || null,
        headimg: post.headimg,
        author: post.author,
        byline: post.byline === undefined ? null : post.byline,
        enclosures: post.enclosures === undefined ? null : post.enclosures,
      }));
    }
    return hexo.exit();
  })
  .catch((error) => { console.error(error); process.exit(1); });
