"""The CI/CD files hold together without running CI: action.yml, the GitLab template, the
workflow examples and the pipeline driver.

Every ``ocimodel ...`` command line in them is checked against the CLI itself (typer's click
command tree): the subcommand exists, each option is one of its options (a value option
takes its value), the arguments fit. A renamed flag or a typo fails here instead of in a
user's pipeline. No network, no registry: tests/test_ci_cd_run.py runs the scripts.
"""

from __future__ import annotations

import functools
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import typer.main
import yaml

from ocimodel.cli.app import app

ROOT = Path(__file__).resolve().parent.parent
ACTION = ROOT / "action.yml"
GITLAB = ROOT / "examples" / "gitlab" / "ocimodel.gitlab-ci.yml"
PIPELINE = ROOT / "examples" / "pipeline" / "pipeline.sh"
GITHUB_EXAMPLES = sorted((ROOT / "examples" / "github").glob("*.yml"))
DOCS = ROOT / "docs" / "ci-cd.md"

# Typer builds click commands (its own copy of click, in recent versions): read them by their
# public attributes (commands, params, opts, nargs...), not by class.
CLI = typer.main.get_command(app)

# -- reading shell ----------------------------------------------------------------------------

# Words that can stand before a command without being it.
_PREFIX_WORDS = {"step", "exec", "time", "command", "then", "do", "else", "elif", "if", "while", "until", "!", "{"}
_SEPARATORS = {";", "&&", "||", "|", "&", "(", ")", ";;", "|&", "}"}
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_ARRAY_DEFINITION = re.compile(r"(?:^|[\s;&|])([A-Za-z_][A-Za-z0-9_]*)\+?=\(([^()]*)\)")
_ARRAY_USE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\[@\]\}$")
_HEREDOC = re.compile(r"<<-?\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\1")


def _logical_lines(script: str) -> list[str]:
    """The script's lines with continuations joined and here-document bodies left out
    (they are input, not commands: the action's is Python)."""
    out: list[str] = []
    lines = iter(script.replace("\\\n", " ").splitlines())
    for line in lines:
        out.append(line)
        match = _HEREDOC.search(line)
        if match:
            for body in lines:
                if body.strip() == match.group(2):
                    break
    return out


def _substitutions(line: str) -> tuple[str, list[str]]:
    """``line`` with each ``$( ... )`` replaced by a placeholder word, and the commands
    inside them (each one a line of its own, recursively)."""
    inner: list[str] = []
    out: list[str] = []
    i = 0
    quote = ""
    while i < len(line):
        char = line[i]
        if quote == "'":
            quote = "" if char == "'" else quote
        elif char == "'" and not quote:
            quote = "'"
        elif char == '"':
            quote = "" if quote == '"' else '"'
        elif line.startswith("$(", i) and not line.startswith("$((", i):
            depth, j, q = 1, i + 2, ""
            while j < len(line) and depth:
                c = line[j]
                if q:
                    q = "" if c == q else q
                elif c in "'\"":
                    q = c
                elif c == "(":
                    depth += 1
                elif c == ")":
                    depth -= 1
                j += 1
            body = line[i + 2 : j - 1]
            rest, nested = _substitutions(body)
            inner += [rest, *nested]
            out.append("SUBSTITUTION")
            i = j
            continue
        out.append(char)
        i += 1
    return "".join(out), inner


def _tokens(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()<>")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return list(lexer)


def _arrays(lines: list[str]) -> dict[str, list[str]]:
    """Every word ever put in each bash array: ``signing=(--key "$KEY")``, ``card+=(...)``."""
    arrays: dict[str, list[str]] = {}
    for line in lines:
        for name, body in _ARRAY_DEFINITION.findall(line):
            arrays.setdefault(name, []).extend(_tokens(body))
    return arrays


def _script_lines(script: str) -> list[str]:
    # A GitHub expression is one word wherever it stands (the examples use them in run:).
    lines = _logical_lines(re.sub(r"\$\{\{.*?\}\}", "EXPRESSION", script))
    expanded: list[str] = []
    for line in lines:
        rest, inner = _substitutions(line)
        expanded += [rest, *inner]
    return expanded


def array_assignments(script: str) -> dict[str, list[list[str]]]:
    """Each ``name=(...)`` of the script (not ``+=``), word lists per assignment: the
    branches a script chooses between (``signing=(--key "$K")`` or ``signing=()``)."""
    found: dict[str, list[list[str]]] = {}
    for line in _script_lines(script):
        for match in re.finditer(r"(?:^|[\s;&|])([A-Za-z_][A-Za-z0-9_]*)=\(([^()]*)\)", line):
            found.setdefault(match.group(1), []).append(_tokens(match.group(2)))
    return found


def ocimodel_commands(script: str, *, expand: bool = True) -> list[list[str]]:
    """The argument lists of the ``ocimodel`` commands a shell script runs (``ocimodel``,
    ``$OCIMODEL`` or a path ending in /ocimodel in command position), arrays expanded to
    every word they are ever given (``expand=False``: left as ``${name[@]}``)."""
    expanded = _script_lines(script)
    arrays = _arrays(expanded) if expand else {}
    commands: list[list[str]] = []
    for line in expanded:
        words = _tokens(line)
        simple: list[str] = []
        for word in [*words, ";"]:
            if word in _SEPARATORS:
                command = _ocimodel_args(simple, arrays)
                if command is not None:
                    commands.append(command)
                simple = []
            else:
                simple.append(word)
    return commands


def _ocimodel_args(words: list[str], arrays: dict[str, list[str]]) -> list[str] | None:
    i = 0
    while i < len(words) and (words[i] in _PREFIX_WORDS or _ASSIGNMENT.match(words[i])):
        i += 1
    if i == len(words) or words[i].rsplit("/", 1)[-1] not in ("ocimodel", "$OCIMODEL", "${OCIMODEL}"):
        return None
    args: list[str] = []
    for word in words[i + 1 :]:
        if word in ("<", ">", ">>", ">&", "<<<", "<<", "&>"):
            if args and args[-1].isdigit():
                args.pop()  # the 2 of 2>
            break
        args += _expand(word, arrays) if arrays else [word]
    return args


def _expand(word: str, arrays: dict[str, list[str]], depth: int = 0) -> list[str]:
    """``"${name[@]}"`` as every word the array is given (arrays copied from arrays too)."""
    use = _ARRAY_USE.match(word)
    if use is None:
        return [word]
    if use.group(1) not in arrays or depth > 5:
        return [f"<undefined array {use.group(1)}>"]
    return [w for item in arrays[use.group(1)] for w in _expand(item, arrays, depth + 1)]


# -- checking against the CLI -------------------------------------------------------------------


def _is_option(param) -> bool:
    return param.param_type_name == "option"


def _find_option(command, name: str):
    for param in command.params:
        if _is_option(param) and name in (*param.opts, *param.secondary_opts):
            return param
    return None


def check_command(args: list[str]) -> list[str]:
    """What is wrong with ``ocimodel ARGS`` (empty: nothing)."""
    command = CLI
    path = ["ocimodel"]
    i = 0
    # the group's own options (--debug, --ca-file...) and the subcommand chain
    while getattr(command, "commands", None) is not None:  # a group
        if i == len(args):
            return [f"{' '.join(path)}: no subcommand"]
        word = args[i]
        if word.startswith("-"):
            option = _find_option(command, word.partition("=")[0])
            if option is None:
                return [f"{' '.join(path)}: no option {word}"]
            if option.is_eager:
                return []  # --version, --help: nothing else is read
            i += 1 if option.is_flag or "=" in word else 2
            continue
        sub = command.commands.get(word)
        if sub is None:
            return [f"{' '.join(path)}: no subcommand {word!r}"]
        command, path, i = sub, [*path, word], i + 1
    errors: list[str] = []
    positional = 0
    seen: set[str] = set()
    rest = args[i:]
    j = 0
    while j < len(rest):
        word = rest[j]
        if word == "--":
            positional += len(rest) - j - 1
            break
        if word.startswith("-") and word != "-":
            name = word.partition("=")[0]
            option = _find_option(command, name)
            if option is None:
                errors.append(f"{' '.join(path)}: no option {name}")
                j += 1
                continue
            seen.add(option.name or "")
            if option.is_flag or option.count or "=" in word:
                j += 1
            elif j + 1 >= len(rest):
                errors.append(f"{' '.join(path)}: {name} needs a value")
                j += 1
            else:
                j += 2
            continue
        positional += 1
        j += 1
    arguments = [p for p in command.params if p.param_type_name == "argument"]
    if not any(a.nargs == -1 for a in arguments) and positional > sum(a.nargs for a in arguments):
        errors.append(f"{' '.join(path)}: {positional} arguments, it takes {sum(a.nargs for a in arguments)}")
    required = sum(a.nargs for a in arguments if a.required and a.nargs > 0)
    if positional < required:
        errors.append(f"{' '.join(path)}: {positional} arguments, it needs {required}")
    for param in command.params:
        if _is_option(param) and param.required and param.name not in seen and not param.envvar:
            errors.append(f"{' '.join(path)}: {param.opts[0]} is required")
    return errors


# -- the files ----------------------------------------------------------------------------------


class _GitLabLoader(yaml.SafeLoader):
    """YAML with GitLab's ``!reference [job, key]`` tag (kept as a ("!reference", [...]) pair)."""


_GitLabLoader.add_constructor("!reference", lambda loader, node: ("!reference", loader.construct_sequence(node)))


@functools.cache
def _action() -> dict:
    return yaml.safe_load(ACTION.read_text())


@functools.cache
def _gitlab() -> dict:
    return yaml.load(GITLAB.read_text(), Loader=_GitLabLoader)  # noqa: S506 - a SafeLoader subclass


def _gitlab_script(job: dict, template: dict) -> str:
    """A job's before_script and script as the runner joins them, !reference resolved."""

    def lines(key: str, entry: dict) -> list[str]:
        out: list[str] = []
        for item in entry.get(key, []):
            if isinstance(item, tuple):
                target, field = item[1]
                out += lines(field, template[target])
            else:
                out.append(item)
        return out

    def inherited(key: str, entry: dict) -> list[str]:
        if key in entry:
            return lines(key, entry)
        parent = entry.get("extends")
        return inherited(key, template[parent]) if parent else []

    return "\n".join([*inherited("before_script", job), *inherited("script", job)])


def _action_runs() -> str:
    return "\n".join(step["run"] for step in _action()["runs"]["steps"] if "run" in step)


def _github_example_runs(path: Path) -> str:
    workflow = yaml.safe_load(path.read_text())
    return "\n".join(
        step["run"] for job in workflow["jobs"].values() for step in job.get("steps", []) if "run" in step
    )


@functools.cache
def _scripts() -> dict[str, str]:
    template = _gitlab()
    scripts = {
        "action.yml": _action_runs(),
        "pipeline.sh": PIPELINE.read_text(),
        **{f"gitlab {name}": _gitlab_script(job, template) for name, job in template.items() if name.startswith(".")},
    }
    for path in GITHUB_EXAMPLES:
        scripts[f"examples/github/{path.name}"] = _github_example_runs(path)
    return scripts


# -- the checker itself ---------------------------------------------------------------------------


def test_the_checker_finds_commands_through_substitutions_arrays_and_wrappers():
    script = '\n'.join([
        'signing=(--key "$KEY")',
        'signing=()',
        'digest="$(ocimodel push "$DIR" "$REF" --name m -q)"',
        'step "$OCIMODEL" sign "$REF" "${signing[@]}" >&2',
        'OCIMODEL_ACTOR=ci ocimodel promote "$REF" --to prod \\',
        '    --policy p.yaml || exit 1',
        'echo "ocimodel verify $REF"   # ocimodel verify in a string or a comment is not run',
        'python - <<\'PY\'',
        'print("ocimodel scan x --bogus")',
        'PY',
    ])
    assert ocimodel_commands(script) == [
        ["push", "$DIR", "$REF", "--name", "m", "-q"],
        ["sign", "$REF", "--key", "$KEY"],
        ["promote", "$REF", "--to", "prod", "--policy", "p.yaml"],
    ]


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("ocimodel sing REF", "no subcommand 'sing'"),
        ("ocimodel sign REF --keyy k.pem", "no option --keyy"),
        ("ocimodel sbom REF --attest --ouput x", "no option --ouput"),
        ("ocimodel promote REF --policy p.yaml", "--to is required"),
        ("ocimodel verify", "0 arguments, it needs 1"),
        ("ocimodel verify A B", "2 arguments, it takes 1"),
        ("ocimodel scan REF --fail-on", "--fail-on needs a value"),
        ("ocimodel key genrate", "no subcommand 'genrate'"),
        ('trust=(--polcy p.yaml)\nocimodel verify REF "${trust[@]}"', "no option --polcy"),
    ],
)
def test_the_checker_catches_what_the_cli_would_refuse(line, error):
    (args,) = ocimodel_commands(line)
    assert any(error in found for found in check_command(args)), check_command(args)


def test_the_checker_accepts_what_the_cli_accepts():
    for line in (
        "ocimodel --debug push DIR REF --metric a=1 --fail-on=high -q",
        "ocimodel verify REF --no-plain-http --policy p.yaml --json",
        "ocimodel key generate --output-key-prefix x",
        "ocimodel login ghcr.io -u me --password-stdin",
    ):
        (args,) = ocimodel_commands(line)
        assert check_command(args) == [], line


# -- every command in the CI/CD files ---------------------------------------------------------------

_STEPS = {"push", "scan", "sign", "attest", "sbom", "eval", "verify", "promote"}


@pytest.mark.parametrize("name", sorted(_scripts()))
def test_every_ocimodel_command_names_real_subcommands_and_options(name):
    commands = ocimodel_commands(_scripts()[name])
    # model-release.yml runs ocimodel only through the action
    assert commands or name == "examples/github/model-release.yml", f"{name}: no ocimodel command found"
    errors = [f"ocimodel {' '.join(args)}: {e}" for args in commands for e in check_command(args)]
    assert errors == []


@pytest.mark.parametrize("name", sorted(_scripts()))
def test_every_script_is_valid_bash(name):
    # bash -n parses without running: an unclosed quote or `fi` fails here, not in CI.
    checked = subprocess.run(["bash", "-n", "-c", _scripts()[name]], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr


@pytest.mark.parametrize("name", ["action.yml", "pipeline.sh", "gitlab .ocimodel-release"])
def test_each_flow_has_every_step(name):
    ran = {args[0] for args in ocimodel_commands(_scripts()[name])}
    assert _STEPS <= ran, f"{name} lacks {_STEPS - ran}"
    commands = ocimodel_commands(_scripts()[name])
    assert all("--attest" in args for args in commands if args[0] in ("sbom", "scan"))
    # An evaluation record is signed only when told how (an unsigned one no policy trusts):
    # --key or --keyless on the line, or in every assignment of an array it uses.
    assignments = array_assignments(_scripts()[name])
    for args in ocimodel_commands(_scripts()[name], expand=False):
        if args[0] == "eval":
            used = [m.group(1) for m in map(re.compile(r"^\$\{(\w+)\[@\]\}$").match, args) if m]
            signed_by_array = any(
                assignments.get(array) and all({"--key", "--keyless"} & set(words) for words in assignments[array])
                for array in used
            )
            assert {"--key", "--keyless"} & set(args) or signed_by_array, args


# -- action.yml ---------------------------------------------------------------------------------------


def test_the_action_is_a_composite_action_of_bash_steps():
    action = _action()
    assert action["runs"]["using"] == "composite"
    steps = action["runs"]["steps"]
    assert all(step.get("shell") == "bash" for step in steps if "run" in step)
    ids = [step.get("id") for step in steps]
    assert None not in ids and len(set(ids)) == len(ids)
    assert all(spec.get("description") for spec in action["inputs"].values())
    assert all(spec.get("description") for spec in action["outputs"].values())


def test_every_input_used_is_declared_and_every_input_declared_is_used():
    text = ACTION.read_text()
    declared = set(_action()["inputs"])
    used = set(re.findall(r"\binputs\.([A-Za-z0-9_-]+)", text))
    assert used - declared == set()
    assert declared - used == set()


def test_scripts_take_inputs_through_the_environment_only():
    # An expression inside run: is pasted into the script before bash reads it: an input
    # with a quote or $(...) in it would run as code.
    for step in _action()["runs"]["steps"]:
        if "run" in step:
            assert "${{" not in step["run"], step["id"]


def test_outputs_map_to_outputs_that_steps_write():
    action = _action()
    steps = {step["id"]: step for step in action["runs"]["steps"]}
    references = [spec["value"] for spec in action["outputs"].values()]
    references += [value for step in steps.values() for value in step.get("env", {}).values() if isinstance(value, str)]
    found = [m for value in references for m in re.findall(r"steps\.([\w-]+)\.outputs\.([\w-]+)", value)]
    assert len(found) >= len(action["outputs"])
    for step_id, name in found:
        assert step_id in steps, f"no step {step_id}"
        assert re.search(rf'echo "{re.escape(name)}=.*>> "\$GITHUB_OUTPUT"', steps[step_id]["run"]), (step_id, name)


def test_the_password_reaches_ocimodel_on_stdin_only():
    steps = _action()["runs"]["steps"]
    holding = [step for step in steps if "inputs.password" in yaml.safe_dump(step)]
    assert [step["id"] for step in holding] == ["login"]
    (login,) = holding
    (args,) = ocimodel_commands(login["run"])
    assert args[0] == "login" and "--password-stdin" in args
    assert "-p" not in args and "--password" not in args


def test_keyless_signing_is_the_default_and_promote_gets_a_token():
    action = _action()
    assert action["inputs"]["key"]["default"] == ""
    promote = next(step for step in action["runs"]["steps"] if step["id"] == "promote")
    assert "identity_token_from_environment" in promote["run"] and "SIGSTORE_ID_TOKEN" in promote["run"]


# -- the GitLab template and the workflow examples ------------------------------------------------------

_GITLAB_JOBS = {".ocimodel", ".ocimodel-push", ".ocimodel-scan", ".ocimodel-sign", ".ocimodel-attest",
                ".ocimodel-evaluate", ".ocimodel-verify", ".ocimodel-promote", ".ocimodel-release"}


def test_the_gitlab_template_adds_only_hidden_jobs_with_a_sigstore_token():
    template = _gitlab()
    assert set(template) == _GITLAB_JOBS  # include-able: it runs nothing by itself
    assert template[".ocimodel"]["id_tokens"] == {"SIGSTORE_ID_TOKEN": {"aud": "sigstore"}}
    for name in _GITLAB_JOBS - {".ocimodel"}:
        assert template[name]["extends"] == ".ocimodel"
    for item in template[".ocimodel-release"]["script"]:
        assert isinstance(item, tuple) and item[1][0] in template and item[1][1] == "script"


def test_the_github_examples_use_the_action_with_declared_inputs():
    declared = set(_action()["inputs"])
    users = 0
    for path in GITHUB_EXAMPLES:
        workflow = yaml.safe_load(path.read_text())
        for job in workflow["jobs"].values():
            for step in job.get("steps", []):
                if str(step.get("uses", "")).split("@")[0].endswith(("ocimodel", "./")):
                    users += 1
                    assert set(step.get("with", {})) <= declared, path.name
                    assert workflow["permissions"]["id-token"] == "write"
    assert users >= 1


def test_the_docs_name_every_input_output_and_variable():
    docs = DOCS.read_text()
    action = _action()
    for name in [*action["inputs"], *action["outputs"]]:
        assert f"`{name}`" in docs, name
    for name in _gitlab()[".ocimodel"]["variables"]:
        assert f"`{name}`" in docs, name
