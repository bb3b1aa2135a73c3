"""Rotowire box scores (Wiseman, Shieber & Rush, EMNLP 2017; harvardnlp/boxscore-data) as text.

A game record holds ``home_line`` / ``vis_line`` (team stats keyed ``TEAM-PTS`` ...) and
``box_score`` (player stats, each column a dict from row index to value). The linearization is:

    <home> CITY NAME | W-L | PTS p (Q1 a, Q2 b, Q3 c, Q4 d) | FG% | 3P% | FT% | REB | AST | TOV
    <vis> ...
    <player> NAME | home/vis | MIN | PTS | REB | AST | STL | BLK | TO | FGM-FGA | 3PM-3PA | FTM-FTA

joined by ``  `` (two spaces: one string); players who did not play (``MIN`` of ``N/A`` or 0) are
left out and the rest are ordered by points, the home team's first. Team fields missing from a
record are skipped, so partial tables still linearize.
"""

from __future__ import annotations

from typing import Any

TEAM_FIELDS = (("FG%", "TEAM-FG_PCT"), ("3P%", "TEAM-FG3_PCT"), ("FT%", "TEAM-FT_PCT"), ("REB", "TEAM-REB"),
               ("AST", "TEAM-AST"), ("TOV", "TEAM-TOV"))
PLAYER_FIELDS = ("MIN", "PTS", "REB", "AST", "STL", "BLK", "TO")
SHOOTING = (("FG", "FGM", "FGA"), ("3P", "FG3M", "FG3A"), ("FT", "FTM", "FTA"))


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def linearize_team(tag: str, line: dict[str, Any]) -> str:
    """One team's line score: name, record, points with quarters, shooting and totals."""
    parts = [f"<{tag}> {line.get('TEAM-CITY', '')} {line['TEAM-NAME']}".replace("  ", " ")]
    if "TEAM-WINS" in line and "TEAM-LOSSES" in line:
        parts.append(f"{line['TEAM-WINS']}-{line['TEAM-LOSSES']}")
    quarters = [f"Q{q} {line[f'TEAM-PTS_QTR{q}']}" for q in range(1, 5) if f"TEAM-PTS_QTR{q}" in line]
    parts.append(f"PTS {line.get('TEAM-PTS', '?')}" + (f" ({', '.join(quarters)})" if quarters else ""))
    parts += [f"{label} {line[key]}" for label, key in TEAM_FIELDS if key in line]
    return " | ".join(parts)


def linearize_players(box: dict[str, dict[str, Any]], home_city: str) -> list[str]:
    """Players who played, home team first, each team by points (descending)."""
    rows = []
    for idx, name in box["PLAYER_NAME"].items():
        col = {key: values.get(idx) for key, values in box.items()}
        if _number(col.get("MIN")) <= 0:
            continue
        side = "home" if col.get("TEAM_CITY") == home_city else "vis"
        stats = [f"{key} {col[key]}" for key in PLAYER_FIELDS if col.get(key) not in (None, "N/A")]
        stats += [f"{label} {col[m]}-{col[a]}" for label, m, a in SHOOTING
                  if col.get(m) not in (None, "N/A") and col.get(a) not in (None, "N/A")]
        rows.append((side != "home", -_number(col.get("PTS")), " | ".join([f"<player> {name}", side, *stats])))
    return [text for *_, text in sorted(rows)]


def linearize_game(game: dict[str, Any]) -> str:
    """The whole box score of one game as one string (see the module docstring)."""
    teams = [linearize_team("home", game["home_line"]), linearize_team("vis", game["vis_line"])]
    return "  ".join(teams + linearize_players(game["box_score"], game.get("home_city", "")))
