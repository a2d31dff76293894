"""Run the report notebook headless: papermill executes ``experiments/report.ipynb`` for a study
into ``STUDY/report/report.ipynb`` and nbconvert exports it to ``STUDY/report/report.html``.

The kernel is ``python3`` of the interpreter running this code (a kernelspec written to a
temporary folder), started directly: no Jupyter server and no network are needed.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

NOTEBOOK = Path(__file__).with_name("report.ipynb")
KERNEL = "python3"


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
        from nbconvert import HTMLExporter
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
    body, _ = HTMLExporter().from_notebook_node(nbformat.read(executed, as_version=4))
    html.write_text(body, encoding="utf-8")
    return html


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
