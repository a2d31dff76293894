"""Run the report notebook headless: papermill executes ``experiments/report.ipynb`` for a study
into ``STUDY/report/report.ipynb`` and nbconvert exports it to ``STUDY/report/report.html``.

The kernel is ``python3`` of the interpreter running this code (a kernelspec written to a
temporary folder), started directly: no Jupyter server and no network are needed. The HTML is a
document, not a notebook: no code cells or prompts, figures embedded as PNG, and none of the
scripts nbconvert would load from a CDN (require.js, MathJax, Mermaid), so it opens offline.
``show`` is what the notebook's cells call to display a section of the report.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

NOTEBOOK = Path(__file__).with_name("report.ipynb")
KERNEL = "python3"
REMOVE_TAG = "remove_cell"  # notebook cells for readers of the code only (not in the HTML)
# nbconvert's lab template without the scripts it loads from the internet, and a page style
TEMPLATE = """\
{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{% block extra_css %}
<style type="text/css">
  main { max-width: 1100px; margin: 0 auto; padding: 1em 2em; }
  .jp-RenderedHTMLCommon table { font-size: 0.82em; margin: 0.5em 0 1em 0; }
  .jp-RenderedHTMLCommon td, .jp-RenderedHTMLCommon th { padding: 0.25em 0.5em; }
  main .jp-RenderedHTMLCommon pre { white-space: pre-wrap; background: #f6f8fa;
    border: 1px solid #e1e4e8; border-radius: 4px; padding: 0.6em 0.8em; }
  figure.report-figure { margin: 1em 0 1.5em 0; }
  figure.report-figure img { max-width: 100%; height: auto; }
  figure.report-figure figcaption { font-size: 0.9em; color: #444; margin-top: 0.4em; }
</style>
{% endblock extra_css %}
"""


class NotebookError(Exception):
    """The report notebook could not be run or exported."""


def run_notebook(study_dir: str | Path, output_html: str | Path | None = None) -> Path:
    """Execute the report notebook for ``study_dir`` and export it to HTML; returns the HTML path.

    The executed notebook is written beside the HTML with the same stem (default
    ``STUDY/report/report.ipynb`` and ``.html``); the notebook also writes the report and figures.
    """
    try:
        import ipykernel  # noqa: F401  (the kernel the notebook runs in)
        import nbformat
        import papermill
        from nbconvert import HTMLExporter  # noqa: F401  (export_html uses it)
    except ImportError as err:
        raise NotebookError(
            f"the report notebook needs papermill, nbconvert and ipykernel ({err}); install the report "
            "extra: pip install 'cer-textualize[report]'"
        ) from err

    study_dir = Path(study_dir).resolve()
    html = Path(output_html) if output_html else study_dir / "report" / "report.html"
    html = html.resolve()
    executed = html.with_suffix(".ipynb")
    html.parent.mkdir(parents=True, exist_ok=True)
    package_root = NOTEBOOK.resolve().parents[1]  # so the kernel imports this `experiments`
    with _current_interpreter_kernel():
        try:
            papermill.execute_notebook(
                str(NOTEBOOK),
                str(executed),
                parameters={"study_dir": str(study_dir)},
                kernel_name=KERNEL,
                cwd=str(package_root),
                progress_bar=False,
                log_output=False,
            )
        except papermill.PapermillExecutionError as err:
            raise NotebookError(
                f"the report notebook failed in cell {err.exec_count}: {err.ename}: {err.evalue} "
                f"(the executed notebook with the traceback is {executed})"
            ) from err
    html.write_text(export_html(nbformat.read(executed, as_version=4), study_dir), encoding="utf-8")
    return html


def export_html(notebook, study_dir: Path) -> str:
    """The executed notebook as a self-contained HTML document without code."""
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import TagRemovePreprocessor
    from traitlets.config import Config

    config = Config()
    config.TagRemovePreprocessor.remove_cell_tags = {REMOVE_TAG}
    exporter = HTMLExporter(
        config=config,
        extra_loaders=[DictLoader({"cer_report.html.j2": TEMPLATE})],
        template_file="cer_report.html.j2",
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        embed_images=True,
    )
    exporter.register_preprocessor(TagRemovePreprocessor(config=config), enabled=True)
    notebook.metadata["title"] = f"{_study_name(study_dir)}: study report"
    body, _ = exporter.from_notebook_node(notebook)
    return body


def show(blocks) -> None:
    """Display report blocks (``experiments.report.report_sections``): Markdown text as
    Markdown, a figure as its embedded PNG with a numbered caption."""
    import base64
    import html

    from IPython.display import HTML, Markdown, display

    from experiments.figures import PNG_DPI
    from experiments.report import FigureBlock

    for block in blocks:
        if isinstance(block, FigureBlock):
            png = block.png.read_bytes()
            width = int.from_bytes(png[16:20], "big") * 96 // PNG_DPI  # its size in inches
            data = base64.b64encode(png).decode("ascii")
            caption = html.escape(f"Figure {block.number}. {block.caption}")
            display(
                HTML(
                    f'<figure class="report-figure" id="figure-{block.number}">'
                    f'<img src="data:image/png;base64,{data}" alt="{caption}" width="{width}">'
                    f"<figcaption><b>Figure {block.number}.</b> {html.escape(block.caption)}"
                    "</figcaption></figure>"
                )
            )
        else:
            display(Markdown(block))


def _study_name(study_dir: Path) -> str:
    from experiments.study_facts import study_config

    return str(study_config(study_dir).get("name") or study_dir.name)


@contextmanager
def _current_interpreter_kernel():
    """Put a ``python3`` kernelspec for ``sys.executable`` first on JUPYTER_PATH meanwhile."""
    from ipykernel.kernelspec import write_kernel_spec

    previous = os.environ.get("JUPYTER_PATH")
    with tempfile.TemporaryDirectory(prefix="cer-kernel-") as folder:
        write_kernel_spec(os.path.join(folder, "kernels", KERNEL))
        os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [folder, previous]))
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop("JUPYTER_PATH", None)
            else:
                os.environ["JUPYTER_PATH"] = previous
