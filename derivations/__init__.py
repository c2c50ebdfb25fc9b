"""The paper's results, rebuilt from the engines: one script per piece.

Each module here is a piece that runs alone (``python derivations/<piece>.py --out
DIR``) and also as a step of ``muptheory regenerate``, which runs them all in the
order of ``PIECES`` and writes ``index.md``. The folder is installed as the package
``muptheory.derivations`` (see ``pyproject.toml``), so the command works from a plain
``pip install .`` as well as from a checkout.

Pieces (module: what it writes):

- ``table``: the muP of every method in Markdown, LaTeX and JSON;
- ``pc_equilibrium``: PC's equilibrium in deep linear networks against its closed form,
  and the width scaling of C_gamma;
- ``interpolation``: PC's limiting update between the first-order and the
  Gauss-Newton direction;
- ``coordchecks``: coord-check panels of each method's muP;
- ``transfer``: learning-rate transfer of PC and TP/DTP, muP against SP;
- ``tp_alignment``: how TP's and BP's hidden changes align with the last layer;
- ``theory_doc`` and ``cli_reference`` write the project's generated docs and are not
  part of ``regenerate``.
"""

PIECES: tuple[str, ...] = (
    "table",
    "pc_equilibrium",
    "interpolation",
    "tp_alignment",
    "coordchecks",
    "transfer",
)
