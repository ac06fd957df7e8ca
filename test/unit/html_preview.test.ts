/**
 * html_preview: Open Graph data from HTML as Synapse's preview_html finds it — og/article/profile tags, Twitter
 * cards under them, the title/image/description fallbacks, relative image URLs, the document's charset, malformed and
 * huge documents.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { decodeHtml, htmlToOpenGraph, loadHtmlParser, oEmbedToOpenGraph, parseHtmlPage, summarize } from "../../src/services/media/html_preview.js";

beforeAll(loadHtmlParser);

const PAGE = "https://example.org/articles/one.html";

describe("htmlToOpenGraph", () => {
  it("reads og:* meta tags as they are, og:image resolved against the page", () => {
    const og = htmlToOpenGraph(
      `<html><head>
        <meta property="og:title" content="The title">
        <meta property="og:description" content="A short description.">
        <meta property="og:image" content="/img/cover.png">
        <meta property="og:image:width" content="640">
        <meta property="og:image:height" content="480">
        <meta property="og:image:type" content="image/png">
        <meta property="og:site_name" content="Example">
        <meta property="og:url" content="https://example.org/a/1">
        <meta property="og:type" content="article">
        <meta property="article:author" content="Alice">
        <meta property="og:empty" content="">
        <title>Not this one</title>
      </head><body><p>Body text</p></body></html>`,
      PAGE,
    );
    expect(og).toEqual({
      "og:title": "The title",
      "og:description": "A short description.",
      "og:image": "https://example.org/img/cover.png",
      "og:image:width": "640",
      "og:image:height": "480",
      "og:image:type": "image/png",
      "og:site_name": "Example",
      "og:url": "https://example.org/a/1",
      "og:type": "article",
      "article:author": "Alice",
    });
  });

  it("Twitter card tags fill what Open Graph lacks, never overriding it; card, site and creator are dropped", () => {
    const og = htmlToOpenGraph(
      `<meta property="og:title" content="OG title">
       <meta name="twitter:title" content="Twitter title">
       <meta name="twitter:description" content="Twitter description">
       <meta name="twitter:image" content="https://cdn.example.org/t.jpg">
       <meta name="twitter:card" content="summary">
       <meta name="twitter:site" content="@example">
       <meta name="twitter:creator" content="@alice">`,
      PAGE,
    );
    expect(og).toEqual({ "og:title": "OG title", "og:description": "Twitter description", "og:image": "https://cdn.example.org/t.jpg" });
  });

  it("falls back to <title>, <meta name=description> and the largest <img> over 10×10", () => {
    const og = htmlToOpenGraph(
      `<!doctype html><html><head><title>  Page &amp; title </title>
        <meta name="Description" content="Meta description">
      </head><body>
        <img src="tiny.gif" width="1" height="1">
        <img src="small.jpg" width="100" height="50">
        <img src="big.jpg" width="300" height="200">
        <img src="nosize.jpg">
      </body></html>`,
      PAGE,
    );
    expect(og).toEqual({ "og:title": "Page & title", "og:description": "Meta description", "og:image": "https://example.org/articles/big.jpg" });
  });

  it("then to the first h1/h2/h3, any image, the favicon, and the page's visible text", () => {
    const withH1 = htmlToOpenGraph(`<body><nav>Menu text</nav><h1><a href="/">Heading <b>one</b></a></h1><img src="a.png"><p>First paragraph.</p><script>var x = "no";</script><footer>Footer</footer><p>Second.</p></body>`, PAGE);
    expect(withH1["og:title"]).toBe("Heading one");
    expect(withH1["og:image"]).toBe("https://example.org/articles/a.png");
    expect(withH1["og:description"]).toBe("Heading\n\none\n\nFirst paragraph.\n\nSecond.");
    const favicon = htmlToOpenGraph(`<head><link rel="shortcut icon" href="/favicon.ico"></head><body></body>`, PAGE);
    expect(favicon).toEqual({ "og:title": null, "og:image": "https://example.org/favicon.ico", "og:description": null });
    const microdata = htmlToOpenGraph(`<meta itemprop="image" content="//img.example.net/m.png"><img src="x.png" width="500" height="500">`, PAGE);
    expect(microdata["og:image"]).toBe("https://img.example.net/m.png");
  });

  it("resolves a relative image against <base href> when the page has one", () => {
    const og = htmlToOpenGraph(`<head><base href="https://static.example.com/assets/"><meta property="og:image" content="pic.png"></head>`, PAGE);
    expect(og["og:image"]).toBe("https://static.example.com/assets/pic.png");
  });

  it("survives malformed HTML: unclosed tags, stray closers, broken attributes", () => {
    const og = htmlToOpenGraph(`<html><head><title>Broken</title><body><div><p>Text <b>bold <i>both</b> after</i></div></span></p><meta property="og:image" content="http://[bad"><img src=`, PAGE);
    expect(og["og:title"]).toBe("Broken");
    expect(og).not.toHaveProperty("og:image"); // an image URL that does not parse is dropped
    expect(htmlToOpenGraph("", PAGE)).toEqual({ "og:title": null, "og:description": null });
    expect(htmlToOpenGraph("<<<>>> &&& </ >", PAGE)["og:title"]).toBeNull();
  });

  it("a page with more than 50 og: tags loses its og: tags (Synapse's guard)", () => {
    const tags = Array.from({ length: 60 }, (_, i) => `<meta property="og:x${i}" content="v">`).join("");
    const og = htmlToOpenGraph(`${tags}<title>Fallback</title>`, PAGE);
    expect(og).toEqual({ "og:title": "Fallback", "og:description": null });
  });

  it("summarises long descriptions to at most 500 characters plus an ellipsis, also for a huge page", () => {
    const word = "lorem ";
    const og = htmlToOpenGraph(`<meta property="og:description" content="${word.repeat(200)}">`, PAGE);
    const d = og["og:description"] as string;
    expect(d.length).toBeLessThanOrEqual(501);
    expect(d.endsWith("…")).toBe(true);
    // 5 MB of body text: the parse finishes and the description is a bounded summary of the first paragraphs.
    const huge = `<html><head><title>Huge</title></head><body>${"<p>paragraph text here</p>".repeat(200_000)}</body></html>`;
    const big = htmlToOpenGraph(huge, PAGE);
    expect(big["og:title"]).toBe("Huge");
    expect((big["og:description"] as string).length).toBeLessThanOrEqual(501);
  });
});

describe("oEmbed", () => {
  it("finds the page's oEmbed link (alternate or alternative), resolved against the page", () => {
    expect(parseHtmlPage(`<link rel="alternate" type="application/json+oembed" href="/oembed?u=1">`, PAGE).oembedUrl).toBe("https://example.org/oembed?u=1");
    expect(parseHtmlPage(`<link rel="alternative" type="Application/JSON+oEmbed" href="https://o.example/x">`, PAGE).oembedUrl).toBe("https://o.example/x");
    expect(parseHtmlPage(`<link rel="alternate" type="text/xml+oembed" href="/x.xml">`, PAGE).oembedUrl).toBeNull();
  });

  it("converts as Synapse: title, provider, thumbnail; a photo's url; a rich embed's text; cache_age", () => {
    const rich = oEmbedToOpenGraph(
      JSON.stringify({ version: "1.0", type: "rich", title: "T", author_name: "Alice", provider_name: "P", cache_age: "7200", html: "<div><p>Embedded words.</p><img src='e.png'></div>" }),
      PAGE,
      "https://o.example/api/oembed",
    );
    expect(rich).toEqual({
      og: { "og:url": PAGE, "og:title": "T", "og:site_name": "P", "og:description": "Embedded words.", "og:image": "https://o.example/api/e.png" },
      authorName: "Alice",
      cacheAgeMs: 7_200_000,
    });
    const photo = oEmbedToOpenGraph(JSON.stringify({ version: "1.0", type: "photo", url: "https://i.example/p.jpg", thumbnail_url: "https://i.example/t.jpg" }), PAGE, PAGE);
    expect(photo!.og["og:image"]).toBe("https://i.example/p.jpg");
    expect(oEmbedToOpenGraph(JSON.stringify({ version: "1.0", type: "video", html: "<iframe></iframe>" }), PAGE, PAGE)!.og["og:type"]).toBe("video.other");
    expect(oEmbedToOpenGraph(JSON.stringify({ version: "1.0", type: "link" }), PAGE, PAGE)!.og).toEqual({ "og:url": PAGE, "og:type": "website" });
  });

  it("refuses what is not an oEmbed 1.0 object", () => {
    expect(oEmbedToOpenGraph("not json", PAGE, PAGE)).toBeNull();
    expect(oEmbedToOpenGraph("[1]", PAGE, PAGE)).toBeNull();
    expect(oEmbedToOpenGraph(JSON.stringify({ version: "2.0", type: "link" }), PAGE, PAGE)).toBeNull();
  });
});

describe("summarize", () => {
  it("keeps whole paragraphs under the minimum and cuts at a word boundary over the maximum", () => {
    expect(summarize(["One.", "Two."])).toBe("One.\n\nTwo.");
    expect(summarize([])).toBeNull();
    const long = summarize(["word ".repeat(150)]);
    expect(long!.endsWith("word…")).toBe(true);
  });
});

describe("decodeHtml", () => {
  const latin1 = (s: string) => Buffer.from(s, "latin1");
  it("uses the Content-Type charset", () => {
    expect(decodeHtml(latin1("<title>caf\xe9</title>"), "text/html; charset=ISO-8859-1")).toBe("<title>café</title>");
  });
  it("uses <meta charset> and http-equiv when the header has none", () => {
    expect(decodeHtml(latin1('<meta charset="windows-1252"><title>\x93q\x94</title>'), "text/html")).toContain("“q”");
    const sjis = Buffer.concat([Buffer.from('<meta http-equiv="Content-Type" content="text/html; charset=shift_jis"><title>'), Buffer.from([0x93, 0xfa, 0x96, 0x7b]), Buffer.from("</title>")]);
    expect(htmlToOpenGraph(decodeHtml(sjis, "text/html"), PAGE)["og:title"]).toBe("日本");
  });
  it("prefers a byte order mark, defaults to UTF-8, falls back to windows-1252 for bytes that are not UTF-8", () => {
    expect(decodeHtml(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from("é")]), "text/html; charset=iso-8859-1")).toBe("é");
    expect(decodeHtml(Buffer.from("<p>naïve</p>"), undefined)).toBe("<p>naïve</p>");
    expect(decodeHtml(latin1("<p>na\xefve</p>"), "text/html")).toBe("<p>naïve</p>");
  });
  it("skips an unknown charset label", () => {
    expect(decodeHtml(Buffer.from("<p>ok ü</p>"), "text/html; charset=x-no-such-thing")).toBe("<p>ok ü</p>");
  });
});
