// flame_svg.c — see flame_svg.h. The layout is computed here (frame x and
// width in pixels at full view); the embedded script only rescales it for
// zoom and recolors it for search, so the SVG renders without script too.
#include "flame_svg.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FRAME_H 16      // pixels per stack level
#define XPAD 10         // left and right margins
#define TOP 64          // title, subtitle, controls
#define BOTTOM 30       // the details line
#define CHAR_W 7.0      // average glyph width of 12px monospace-ish text, for label fitting

// Decodes one UTF-8 character valid in XML 1.0; returns its length, 0 when invalid.
static size_t utf8_ok(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return (c >= 0x20 || c == '\t') && c != 0x7f ? 1 : 0;
    size_t k = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
    if (!k || k > n || c > 0xf4) return 0;
    uint32_t cp = c & (0x7f >> k);
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((k == 3 && cp < 0x800) || (k == 4 && (cp < 0x10000 || cp > 0x10ffff))) return 0;   // overlong, too large
    if ((cp >= 0xd800 && cp <= 0xdfff) || cp == 0xfffe || cp == 0xffff) return 0;        // not XML characters
    if (cp >= 0x80 && cp <= 0x9f) return 0;                                                // C1 controls: discouraged, replaced
    return k;
}

// Writes s[0..n) as XML character data; invalid bytes become '?'.
static void xml_put(FILE *f, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_ok(u + i, n - i);
        if (!k) { fputc('?', f); i++; continue; }
        if (k == 1) {
            switch (u[i]) {
            case '&': fputs("&amp;", f); break;
            case '<': fputs("&lt;", f); break;
            case '>': fputs("&gt;", f); break;
            case '"': fputs("&quot;", f); break;
            case '\'': fputs("&apos;", f); break;
            default: fputc(u[i], f);
            }
        } else {
            fwrite(u + i, 1, k, f);
        }
        i += k;
    }
}
static void xml_puts(FILE *f, const char *s) { xml_put(f, s, strlen(s)); }

// Characters (not bytes) in s[0..n).
static size_t utf8_len(const char *s, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xc0) != 0x80;
    return c;
}

// The byte length of the first `chars` characters of s.
static size_t utf8_prefix(const char *s, size_t n, size_t chars) {
    size_t i = 0, c = 0;
    while (i < n) {
        if (((unsigned char)s[i] & 0xc0) != 0x80) {
            if (c == chars) break;
            c++;
        }
        i++;
    }
    return i;
}

// A stable color from the name: flamegraph.pl's "hot" palette.
static void color(const char *name, int *r, int *g, int *b) {
    uint64_t h = 1469598103934665603ull;
    for (const char *p = name; *p; p++) h = (h ^ (uint8_t)*p) * 1099511628211ull;
    double v1 = (double)(h & 0xffff) / 65536.0, v2 = (double)((h >> 16) & 0xffff) / 65536.0,
           v3 = (double)((h >> 32) & 0xffff) / 65536.0;
    *r = 205 + (int)(50 * v3);
    *g = (int)(230 * v1);
    *b = (int)(55 * v2);
}

static const char css[] =
    "text{font-family:Verdana,sans-serif;font-size:12px;fill:#000}\n"
    "#title{font-size:17px;text-anchor:middle}\n"
    "#subtitle{fill:#555;text-anchor:middle}\n"
    ".btn{cursor:pointer;fill:#225}\n"
    ".btn:hover{text-decoration:underline}\n"
    "g.f{cursor:pointer}\n"
    "g.f:hover rect{stroke:#000;stroke-width:0.5}\n"
    "g.f text{pointer-events:none;font-size:11px}\n"
    "g.hide{display:none}\n"
    "g.anc rect{opacity:0.5}\n"
    "#search{font:12px Verdana,sans-serif;width:220px;box-sizing:border-box}\n";

// The script: zoom by rescaling x/width of frames, search by recoloring.
static const char js[] =
    "'use strict';\n"
    "var W = +document.documentElement.getAttribute('data-width'), XPAD = 10, CW = 7;\n"
    "var frames = [], details, matched, box, zoomed = null;\n"
    "function label(f, w) {\n"
    "  var n = Math.floor((w - 6) / CW);\n"
    "  if (n < 3) return '';\n"
    "  return f.name.length <= n ? f.name : f.name.substring(0, n - 2) + '..';\n"
    "}\n"
    "function place(f, x, w) {\n"
    "  f.r.setAttribute('x', x.toFixed(2)); f.r.setAttribute('width', w.toFixed(2));\n"
    "  f.t.setAttribute('x', (x + 3).toFixed(2)); f.t.textContent = label(f, w);\n"
    "}\n"
    "function zoom(z) {\n"
    "  zoomed = z;\n"
    "  var x0 = z ? z.x : XPAD, w0 = z ? z.w : W - 2 * XPAD, s = (W - 2 * XPAD) / w0, eps = 1e-6;\n"
    "  frames.forEach(function (f) {\n"
    "    var cls = 'f';\n"
    "    if (!z) place(f, f.x, f.w);\n"
    "    else if (f.d < z.d && f.x <= x0 + eps && f.x + f.w >= x0 + w0 - eps) { place(f, XPAD, W - 2 * XPAD); cls = 'f anc'; }\n"
    "    else if (f.d >= z.d && f.x >= x0 - eps && f.x + f.w <= x0 + w0 + eps) place(f, XPAD + (f.x - x0) * s, f.w * s);\n"
    "    else cls = 'f hide';\n"
    "    f.g.setAttribute('class', cls);\n"
    "  });\n"
    "  document.getElementById('unzoom').style.display = z ? '' : 'none';\n"
    "}\n"
    "function search(q) {\n"
    "  var re = null;\n"
    "  if (q) { try { re = new RegExp(q, 'i'); } catch (e) { re = null; } }\n"
    "  var spans = [];\n"
    "  frames.forEach(function (f) {\n"
    "    var hit = q && (re ? re.test(f.name) : f.name.toLowerCase().indexOf(q.toLowerCase()) >= 0);\n"
    "    f.r.setAttribute('fill', hit ? 'rgb(230,0,230)' : f.fill);\n"
    "    if (hit) spans.push([f.x, f.x + f.w]);\n"
    "  });\n"
    "  spans.sort(function (a, b) { return a[0] - b[0]; });\n"
    "  var sum = 0, end = -1;\n"
    "  spans.forEach(function (sp) {\n"
    "    if (sp[0] >= end) { sum += sp[1] - sp[0]; end = sp[1]; }\n"
    "    else if (sp[1] > end) { sum += sp[1] - end; end = sp[1]; }\n"
    "  });\n"
    "  matched.textContent = q ? 'Matched: ' + (100 * sum / (W - 2 * XPAD)).toFixed(1) + '%' : '';\n"
    "}\n"
    "function init() {\n"
    "  details = document.getElementById('details'); matched = document.getElementById('matched');\n"
    "  var gs = document.querySelectorAll('g.f');\n"
    "  for (var i = 0; i < gs.length; i++) {\n"
    "    var g = gs[i], r = g.querySelector('rect'), ti = g.querySelector('title').textContent;\n"
    "    var f = {g: g, r: r, t: g.querySelector('text'), info: ti, name: ti.substring(0, ti.lastIndexOf(' (')),\n"
    "             x: +r.getAttribute('x'), w: +r.getAttribute('width'), d: +g.getAttribute('data-d'), fill: r.getAttribute('fill')};\n"
    "    frames.push(f);\n"
    "    (function (f) {\n"
    "      g.addEventListener('mouseover', function () { details.textContent = f.info; });\n"
    "      g.addEventListener('mouseout', function () { details.textContent = ' '; });\n"
    "      g.addEventListener('click', function () { zoom(f.d === 0 ? null : f); });\n"
    "    })(f);\n"
    "  }\n"
    "  document.getElementById('unzoom').addEventListener('click', function () { zoom(null); });\n"
    "  box = document.getElementById('search');\n"
    "  if (box) box.addEventListener('input', function () { search(box.value); });\n"
    "  window.addEventListener('keydown', function (e) {\n"
    "    if (box && (e.ctrlKey || e.metaKey) && e.key === 'f') { e.preventDefault(); box.focus(); }\n"
    "    if (e.key === 'Escape') { if (box) box.value = ''; search(''); zoom(null); }\n"
    "  });\n"
    "}\n"
    "window.addEventListener('load', init);\n";

long flame_svg_write(fold_tree *t, const flame_svg_opts *o, FILE *f) {
    flame_svg_opts def = {0};
    if (!o) o = &def;
    const char *title = o->title ? o->title : "Flame Graph";
    const char *unit = o->unit ? o->unit : "samples";
    int W = o->width > 0 ? o->width : 1200;
    if (W < 200) W = 200;
    if (W > 100000) W = 100000;
    double min_frac = o->min_frac >= 0 ? o->min_frac : 0.001;
    fold_sort(t);
    size_t n;
    const fold_node *nodes = fold_nodes(t, &n);
    int64_t total = fold_total(t);
    double scale = total > 0 ? (W - 2.0 * XPAD) / (double)total : 0;
    // Pass 1: which frames are drawn, their x, and the deepest drawn level.
    double *xs = calloc(n, sizeof *xs);
    unsigned char *shown = calloc(n, 1);
    if (!xs || !shown) { free(xs); free(shown); return -1; }
    uint32_t depth = 0;
    xs[0] = XPAD;
    shown[0] = 1;
    for (size_t i = 0; i < n; i++) {   // parents come before children (ids grow down the tree)
        if (!shown[i]) continue;
        if (nodes[i].depth > depth) depth = nodes[i].depth;
        double x = xs[i];
        for (uint32_t c = nodes[i].first_child; c; c = nodes[c].next_sibling) {
            xs[c] = x;
            x += (double)nodes[c].total * scale;
            shown[c] = total > 0 && (double)nodes[c].total >= min_frac * (double)total;
        }
    }
    int H = TOP + (int)(depth + 1) * FRAME_H + BOTTOM;
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n"
               "<svg version=\"1.1\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "viewBox=\"0 0 %d %d\" data-width=\"%d\">\n",
            W, H, W, H, W);
    fprintf(f, "<style type=\"text/css\"><![CDATA[\n%s]]></style>\n", css);
    fprintf(f, "<script type=\"text/ecmascript\"><![CDATA[\n%s]]></script>\n", js);
    fprintf(f, "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"#f8f8f0\"/>\n", W, H);
    fprintf(f, "<text id=\"title\" x=\"%d\" y=\"22\">", W / 2);
    xml_puts(f, title);
    fputs("</text>\n", f);
    if (o->subtitle) {
        fprintf(f, "<text id=\"subtitle\" x=\"%d\" y=\"40\">", W / 2);
        xml_puts(f, o->subtitle);
        fputs("</text>\n", f);
    }
    fprintf(f, "<text id=\"unzoom\" class=\"btn\" x=\"%d\" y=\"56\" style=\"display:none\">Reset Zoom</text>\n", XPAD);
    fprintf(f, "<foreignObject x=\"%d\" y=\"42\" width=\"224\" height=\"20\">"
               "<input xmlns=\"http://www.w3.org/1999/xhtml\" id=\"search\" type=\"search\" placeholder=\"Search (regex)\"/>"
               "</foreignObject>\n",
            W - XPAD - 224);
    fprintf(f, "<text id=\"matched\" x=\"%d\" y=\"%d\" style=\"text-anchor:end\"> </text>\n", W - XPAD, H - 10);
    fprintf(f, "<text id=\"details\" x=\"%d\" y=\"%d\"> </text>\n", XPAD, H - 10);
    // Pass 2: the frames.
    long drawn = 0;
    for (size_t i = 0; i < n; i++) {
        if (!shown[i]) continue;
        const fold_node *nd = &nodes[i];
        const char *name = fold_name(t, nd);
        size_t len = strlen(name);
        double w = (double)nd->total * scale;
        double y = H - BOTTOM - (double)(nd->depth + 1) * FRAME_H;
        int r, g, b;
        color(name, &r, &g, &b);
        if (i == 0) { r = 200; g = 200; b = 200; }
        fprintf(f, "<g class=\"f\" data-d=\"%u\"><title>", nd->depth);
        xml_put(f, name, len);
        fprintf(f, " (%lld ", (long long)nd->total);
        xml_puts(f, unit);
        fprintf(f, ", %.2f%%)</title>", total > 0 ? 100.0 * (double)nd->total / (double)total : 0.0);
        fprintf(f, "<rect x=\"%.2f\" y=\"%.1f\" width=\"%.2f\" height=\"%d\" rx=\"2\" fill=\"rgb(%d,%d,%d)\"/>",
                xs[i], y, w, FRAME_H - 1, r, g, b);
        fprintf(f, "<text x=\"%.2f\" y=\"%.1f\">", xs[i] + 3, y + 11.5);
        long fit = (long)((w - 6) / CHAR_W);
        size_t chars = utf8_len(name, len);
        if (fit >= 3) {
            if (chars <= (size_t)fit) {
                xml_put(f, name, len);
            } else {
                xml_put(f, name, utf8_prefix(name, len, (size_t)fit - 2));
                fputs("..", f);
            }
        }
        fputs("</text></g>\n", f);
        drawn++;
    }
    fputs("</svg>\n", f);
    free(xs);
    free(shown);
    return ferror(f) ? -1 : drawn;
}
