"""`recovery man`: the manual page, in roff, made from the commands' own help (so it never drifts)."""

from __future__ import annotations

from typing import Any

import typer

SECTIONS = """.SH EXIT STATUS
As a Nagios plugin: 0 OK, 1 WARNING (an app recovered, warms up or is degraded), 2 CRITICAL (an app
is down and not recovered), 3 UNKNOWN (a bad config or flag, pm2 missing, the event store unusable).
.SH FILES
The config is \\-\\-config, else $RECOVERY_CONFIG, else the first that exists of
.IR ./recovery.toml ,
.I $XDG_CONFIG_HOME/recovery/recovery.toml
(~/.config/recovery/recovery.toml) and
.IR /etc/recovery/recovery.toml .
The event store is an SQLite file, [store] path (default data/recovery.db beside the config).
.SH ENVIRONMENT
.TP
.B RECOVERY_CONFIG
the config file
.TP
.B XDG_CONFIG_HOME
where the user's config is looked for
.TP
.B COLUMNS
the width tables fit (else the terminal's)
.TP
.B NO_COLOR
no colour, even on a terminal
.TP
.B PM2_HOME
the PM2 home the pm2 commands use, as for pm2 itself
.SH EXAMPLES
.nf
*/5 * * * * recovery check \\-\\-trigger cron \\-\\-deadline 55s
recovery status
recovery why web
recovery report \\-\\-since 7d
.fi
.SH SEE ALSO
.BR pm2 (1),
.BR crontab (5)
"""


# Characters the help texts use, as roff's own glyphs (a page then needs no preconv).
_GLYPHS = {
    "×": "\\(mu",
    "…": "...",
    "≤": "\\(<=",
    "≥": "\\(>=",
    "→": "\\(->",
    "“": "\\(lq",
    "”": "\\(rq",
    "’": "'",
    "–": "\\(en",
    "—": "\\(em",
}


def _roff(text: str) -> str:
    """Text safe in a roff body: backslashes and dashes escaped, no line starting with . or '."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    for char, escape in _GLYPHS.items():
        text = text.replace(char, escape)
    lines = []
    for line in text.splitlines():
        line = line.strip()
        lines.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(line for line in lines if line) or "\\&"


def _commands(group: Any, prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for name, cmd in sorted(group.commands.items()):
        if getattr(cmd, "commands", None):
            out += _commands(cmd, f"{prefix}{name} ")
        else:
            out.append((prefix + name, cmd))
    return out


def manual(root: Any, version: str) -> str:
    """The roff source of recovery(1) for the click command `root`."""
    lines = [
        f'.TH RECOVERY 1 "" "recovery {version}" "User Commands"',
        ".SH NAME",
        "recovery \\- " + _roff(root.help or "").split("\n")[0],
        ".SH SYNOPSIS",
        ".B recovery",
        ".I COMMAND",
        "[\\fIOPTIONS\\fR]",
        ".SH COMMANDS",
    ]
    for name, cmd in _commands(root):
        lines += [f".SS recovery {_roff(name)}", _roff((cmd.help or "").split("\n\n")[0])]
        for param in cmd.params:
            if not getattr(param, "help", None) or not param.opts:
                continue
            lines += [".TP", "\\fB" + ", ".join(_roff(o) for o in param.opts) + "\\fR", _roff(param.help)]
    return "\n".join(lines) + "\n" + SECTIONS


def man(ctx: typer.Context) -> None:
    """Print the manual page (roff) made from every command's help.

    Example: recovery man | man -l -   (or: recovery man > /usr/local/share/man/man1/recovery.1)
    """
    from importlib.metadata import version

    typer.echo(manual(ctx.find_root().command, version("recovery")), nl=False)
