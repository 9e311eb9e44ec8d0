"""``--format html``: one self-contained page (inline CSS, SVG and script; nothing fetched) with
the model's graph collapsed by module, each confirmed group in its own colour, and the findings
beside it.  Hovering a parameter shows its verdict, reason, group and source line; clicking it
(or a group, or a finding) lights up every member of its groups."""

from __future__ import annotations

import json
from html import escape

from ...report import Report
from .context import Context
from .picture import (BOX_WIDTH, HEAD, NO_GROUP, ROW, Placed, box_title, group_colours,
                      layout, location_text, parameter_info, row_label, tooltip)

CSS = """
body{margin:0;font:13px/1.35 system-ui,sans-serif;color:#222;display:flex;height:100vh}
#graph{flex:1;overflow:auto;background:#fafafa}
#side{width:430px;overflow:auto;border-left:1px solid #ddd;padding:0 14px;background:#fff}
h1{font-size:16px;margin:12px 0 4px} h2{font-size:14px;margin:14px 0 6px}
.box rect.frame{fill:#fff;stroke:#888;rx:5}
.box.input rect.frame,.box.output rect.frame{fill:#eef3ff}
.box text.title{font-weight:600;font-size:12px}
.param text{font:11px ui-monospace,monospace;fill:#555;cursor:pointer}
.param.ineffective text{fill:#111;font-weight:600}
.param.unknown text{fill:#a15c00;font-style:italic}
.param.frozen text{fill:#9aa;text-decoration:line-through}
.param .flag{fill:#d33}
.edge{fill:none;stroke:#999;stroke-width:1.2}
.edge.back{stroke-dasharray:4 3}
svg.lit .param{opacity:.25} svg.lit .param.hl{opacity:1}
.param.hl rect.sw{stroke:#000;stroke-width:1.5}
ul{list-style:none;padding:0;margin:0}
li{padding:3px 4px;border-radius:4px;cursor:pointer} li:hover{background:#f0f0f0}
.sw-inline{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:5px;
vertical-align:-1px}
.code{font-weight:600;margin-right:4px} .warning{color:#a15c00} .error{color:#c00}
.info{color:#555} .loc{color:#777;font:11px ui-monospace,monospace}
#details{white-space:pre-wrap;font:12px ui-monospace,monospace;background:#f6f6f6;
padding:8px;border-radius:4px;min-height:3em}
"""

SCRIPT = """
(function(){
const data=JSON.parse(document.getElementById('wdaudit-data').textContent);
const svg=document.querySelector('#graph svg');
const rows=[...document.querySelectorAll('.param')];
function light(groups,params){
  const gs=new Set(groups.map(String)), ps=new Set(params||[]);
  let first=null;
  rows.forEach(r=>{
    const on=ps.has(r.dataset.param)||(r.dataset.groups||'').split(' ').some(g=>gs.has(g));
    r.classList.toggle('hl',on); if(on&&!first)first=r;});
  if(svg)svg.classList.toggle('lit',gs.size>0||ps.size>0);
  if(first)first.scrollIntoView({block:'center',inline:'center'});
}
function show(name){
  const p=data.parameters[name]; if(!p)return;
  document.getElementById('details').textContent=p.tooltip;
  light(p.groups,[name]);
}
rows.forEach(r=>r.addEventListener('click',()=>show(r.dataset.param)));
document.querySelectorAll('#groups li').forEach(li=>li.addEventListener('click',
  ()=>{document.getElementById('details').textContent=li.title;light([li.dataset.group]);}));
document.querySelectorAll('#findings li').forEach(li=>li.addEventListener('click',
  ()=>light([],li.dataset.params.split(' '))));
// what a reader can see: every group needs a drawn, non-empty row for each of its members
let visible=0;
data.groups.forEach(g=>{
  const seen=g.members.every(m=>rows.some(r=>r.dataset.param===m&&
    r.getBoundingClientRect().width>0&&r.getBoundingClientRect().height>0));
  const li=document.querySelector('#groups li[data-group="'+g.id+'"]');
  if(li)li.classList.add(seen?'visible':'missing');
  if(seen)visible+=1;});
document.body.dataset.groupsVisible=String(visible);
document.body.dataset.groupsTotal=String(data.groups.length);
})();
"""


def render(report: Report, context: Context) -> str:
    colours = group_colours(report)
    info = parameter_info(report)
    for name, item in info.items():
        item["tooltip"] = tooltip(item)
    data = {"model": report.model, "parameters": info,
            "groups": [{"id": g.id, "kind": g.kind, "members": list(g.names)}
                       for g in report.groups]}
    payload = json.dumps(data).replace("</", "<\\/")
    title = f"wdaudit: {report.model} ({context.target})"
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)}</title><style>{CSS}</style></head>\n<body>"
            f"<div id=\"graph\">{_svg(report, colours, info)}</div>\n"
            f"<div id=\"side\">{_side(report, context, colours)}</div>\n"
            f"<script type=\"application/json\" id=\"wdaudit-data\">{payload}</script>\n"
            f"<script>{SCRIPT}</script></body></html>\n")


def _svg(report: Report, colours: dict[int, str], info: dict) -> str:
    placed, width, height = layout(report)
    if not placed:
        return "<p>No graph: this report carries no module overview.</p>"
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" '
             f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}">']
    order = {b: i for i, b in enumerate(placed)}
    for a, b in report.overview.edges:
        parts.append(_edge(placed[a], placed[b], order[a] > order[b]))
    for box in placed.values():
        parts.append(_box(box, colours, info))
    parts.append("</svg>")
    return "\n".join(parts)


def _edge(a: Placed, b: Placed, back: bool) -> str:
    x1, y1 = a.x + a.width / 2, a.y + a.height
    x2, y2 = b.x + b.width / 2, b.y
    bend = max(24.0, abs(y2 - y1) / 2)
    return (f'<path class="edge{" back" if back else ""}" d="M{x1:.0f},{y1:.0f} '
            f'C{x1:.0f},{y1 + bend:.0f} {x2:.0f},{y2 - bend:.0f} {x2:.0f},{y2:.0f}"/>')


def _box(place: Placed, colours: dict[int, str], info: dict) -> str:
    box = place.box
    out = [f'<g class="box {box.kind}" data-module="{escape(box.id)}" '
           f'transform="translate({place.x:.0f},{place.y:.0f})">',
           f'<rect class="frame" width="{place.width:.0f}" height="{place.height:.0f}"/>',
           f'<text class="title" x="8" y="17">{escape(_clip(box_title(box), 40))}</text>']
    for i, name in enumerate(box.parameters):
        item = info.get(name)
        if item is None:
            continue
        y = HEAD + i * ROW
        groups = " ".join(map(str, item["groups"]))
        out.append(f'<g class="param {item["verdict"]}" data-param="{escape(name)}" '
                   f'data-groups="{groups}" transform="translate(0,{y})">'
                   f'<title>{escape(item["tooltip"])}</title>'
                   f'<rect width="{BOX_WIDTH}" height="{ROW}" fill="transparent"/>')
        swatches = [colours[g] for g in item["groups"] if g in colours] or [NO_GROUP]
        for k, fill in enumerate(swatches[:4]):
            out.append(f'<rect class="sw" x="{8 + k * 9}" y="3" width="8" height="10" '
                       f'rx="1.5" fill="{fill}"/>')
        label = f"{row_label(box, name)}  {item['shape']}"
        out.append(f'<text x="{14 + 9 * min(len(swatches), 4)}" y="12">'
                   f'{escape(_clip(label, 38))}</text>')
        if item["findings"]:
            out.append(f'<circle class="flag" cx="{BOX_WIDTH - 10}" cy="8" r="3.5"/>')
        out.append("</g>")
    out.append("</g>")
    return "".join(out)


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _side(report: Report, context: Context, colours: dict[int, str]) -> str:
    summary = report.summary()
    optimizer = f"weight decay from {context.optimizer}" if context.optimizer else \
        f"no optimizer: decay assumed on {report.assumed_decay or 'all'} parameters"
    head = (f"<h1>{escape(report.model)}</h1><div>{escape(context.target)}: "
            f"{summary['parameters']} parameter tensors, {summary['ineffective']} ineffective, "
            f"{summary['unknown']} unknown; {escape(optimizer)}.</div>"
            "<h2>Details</h2><div id=\"details\">Click a parameter, a group or a finding."
            "</div>")
    findings = "".join(
        f'<li data-params="{escape(" ".join(f.parameters))}">'
        f'<span class="code {f.severity}">{f.code}</span>{escape(f.message)} '
        f'<span class="loc">{escape(_where(f))}</span></li>' for f in report.findings)
    groups = "".join(
        f'<li data-group="{g.id}" title="{escape(_group_text(g))}">'
        f'<span class="sw-inline" style="background:{colours[g.id]}"></span>'
        f'#{g.id} {g.kind}: {escape(_clip(", ".join(g.names), 90))}</li>' for g in report.groups)
    return (f"{head}<h2>Findings ({len(report.findings)})</h2><ul id=\"findings\">"
            f"{findings or '<li>none</li>'}</ul><h2>Groups ({len(report.groups)})</h2>"
            f"<ul id=\"groups\">{groups}</ul>")


def _where(finding) -> str:
    return location_text(finding.location)


def _group_text(group) -> str:
    members = "\n".join(f"  {m.name}  (exponent {m.exponent})" for m in group.members)
    normalised = ", ".join(group.normalising_nodes)
    return (f"group #{group.id}: {group.kind}, "
            f"{'confirmed' if group.confirmed else 'not confirmed'}"
            f"{f', normalised by {normalised}' if normalised else ''}\n{members}")
