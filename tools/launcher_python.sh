# Sourced by dist_train.sh, dist_test.sh, slurm_train.sh and slurm_test.sh (after they set ROOT): the Python
# they run. $PYTHON wins; else, with no virtual environment activated, the repository's .venv when it exists
# (tools/install.sh creates it); else `python` on PATH.
if [ -z "${PYTHON:-}" ]; then
    if [ -z "${VIRTUAL_ENV:-}" ] && [ -x "$ROOT/.venv/bin/python" ]; then
        PYTHON="$ROOT/.venv/bin/python"
    else
        PYTHON=python
    fi
fi
