"""A small, strict evaluator for the KQL subset the healer and its tests use.

Supported: `T | where … | count`, `summarize agg(…)[, …] [by col, …]`, `project`, `extend`,
`take`/`limit`, `order by`/`sort by`, `top N by`, with comparisons, `and`/`or`/`not()`,
`in`/`!in`, `=~`, `has`, `contains`, `startswith`, and the functions `ingestion_time()`,
`ago()`, `now()`, `datetime()`, `tostring()`, `tolower()`, `toupper()`, `isempty()`,
`isnotempty()`. Anything else is refused with a syntax or semantic error, as Kusto would refuse
a query it cannot run; the stand-in never guesses.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

Row = dict[str, Any]


class KqlError(Exception):
    """Base of query errors; `code` is the Kusto error code family."""

    code = "SYN0002"
    kind = "Syntax error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class KqlSyntaxError(KqlError):
    pass


class KqlSemanticError(KqlError):
    code = "SEM0100"
    kind = "Semantic error"


class UnknownTableError(KqlSemanticError):
    def __init__(self, table: str) -> None:
        super().__init__(f"'table' operator: Failed to resolve table expression named '{table}'")
        self.table = table


class UnknownColumnError(KqlSemanticError):
    code = "SEM0001"

    def __init__(self, column: str) -> None:
        super().__init__(f"Failed to resolve scalar expression named '{column}'")


@dataclass(frozen=True)
class Token:
    kind: str  # name, string, number, timespan, datetime, op, end
    text: str
    value: Any = None
    pos: int = 0


_TIMESPAN_UNITS = {
    "d": timedelta(days=1),
    "h": timedelta(hours=1),
    "m": timedelta(minutes=1),
    "s": timedelta(seconds=1),
    "ms": timedelta(milliseconds=1),
}
_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>//[^\n]*)
  | (?P<number>\d+(?:\.\d+)?)(?P<unit>ms|d|h|m|s)?(?![A-Za-z0-9_])
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<bracket>\[(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")\])
  | (?P<string>'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")
  | (?P<op>==|!=|<=|>=|=~|!~|!in\b|[|(),=<>+\-*/!])
    """,
    re.VERBOSE,
)


def unquote(literal: str) -> str:
    body = literal[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t", "r": "\r"}.get(m.group(1), m.group(1)), body)


def parse_datetime(text: str) -> datetime:
    value = text.strip().strip("'\"")
    match = re.fullmatch(r"(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}:\d{2}(?::\d{2})?)(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?", value)
    if not match:
        raise KqlSyntaxError(f"datetime literal '{text}' is not valid")
    date, time_part, fraction, zone = match.groups()
    try:
        base = datetime.fromisoformat(f"{date}T{time_part or '00:00:00'}")
    except ValueError as exc:
        raise KqlSyntaxError(f"datetime literal '{text}' is not valid: {exc}") from exc
    if fraction:
        base += timedelta(microseconds=round(float(fraction) * 1_000_000))
    if zone and zone != "Z":
        base = base.replace(tzinfo=datetime.fromisoformat(f"2000-01-01T00:00:00{zone}").tzinfo)
        return base.astimezone(UTC)
    return base.replace(tzinfo=UTC)


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        if text.startswith("datetime(", pos) or text.startswith("datetime (", pos):
            open_at = text.index("(", pos)
            close_at = text.find(")", open_at)
            if close_at < 0:
                raise KqlSyntaxError(f"unterminated datetime literal at position {pos}")
            tokens.append(
                Token("datetime", text[pos : close_at + 1], parse_datetime(text[open_at + 1 : close_at]), pos)
            )
            pos = close_at + 1
            continue
        match = _TOKEN_RE.match(text, pos)
        if not match:
            raise KqlSyntaxError(f"unexpected character {text[pos]!r} at position {pos}")
        kind = match.lastgroup
        chunk = match.group(0)
        if kind == "unit" or match.group("number") is not None:
            number = float(match.group("number"))
            unit = match.group("unit")
            if unit:
                tokens.append(Token("timespan", chunk, _TIMESPAN_UNITS[unit] * number, pos))
            else:
                tokens.append(
                    Token(
                        "number",
                        chunk,
                        int(number) if number.is_integer() and "." not in chunk else number,
                        pos,
                    )
                )
        elif kind == "name":
            tokens.append(Token("name", chunk, chunk, pos))
        elif kind == "bracket":
            tokens.append(Token("name", chunk, unquote(chunk[1:-1]), pos))
        elif kind == "string":
            tokens.append(Token("string", chunk, unquote(chunk), pos))
        elif kind == "op":
            tokens.append(Token("op", chunk, chunk, pos))
        pos = match.end()
    tokens.append(Token("end", "", None, len(text)))
    return tokens


# ---------------------------------------------------------------- expressions

Expr = Callable[[Row, "Context"], Any]


@dataclass
class Context:
    now: datetime


def _cmp(op: str, left: Any, right: Any) -> bool:
    if left is None or right is None:
        return False
    if isinstance(left, datetime) != isinstance(right, datetime):
        raise KqlSemanticError(f"cannot compare {type(left).__name__} with {type(right).__name__} using '{op}'")
    if op == "==":
        return bool(left == right)
    if op == "!=":
        return bool(left != right)
    if op == "<":
        return bool(left < right)
    if op == "<=":
        return bool(left <= right)
    if op == ">":
        return bool(left > right)
    if op == ">=":
        return bool(left >= right)
    if op == "=~":
        return str(left).lower() == str(right).lower()
    if op == "!~":
        return str(left).lower() != str(right).lower()
    if op == "has":
        return (
            re.search(rf"(?<![A-Za-z0-9]){re.escape(str(right).lower())}(?![A-Za-z0-9])", str(left).lower()) is not None
        )
    if op == "contains":
        return str(right).lower() in str(left).lower()
    if op == "startswith":
        return str(left).lower().startswith(str(right).lower())
    raise KqlSyntaxError(f"operator '{op}' is not supported")


_SCALAR_FUNCS: dict[str, tuple[int, Callable[..., Any]]] = {
    "ago": (1, lambda ctx, span: ctx.now - span),
    "now": (0, lambda ctx: ctx.now),
    "tostring": (
        1,
        lambda ctx, v: "" if v is None else (v.isoformat() if isinstance(v, datetime) else str(v)),
    ),
    "tolower": (1, lambda ctx, v: str(v).lower()),
    "toupper": (1, lambda ctx, v: str(v).upper()),
    "isempty": (1, lambda ctx, v: v is None or v == ""),
    "isnotempty": (1, lambda ctx, v: v is not None and v != ""),
    "not": (1, lambda ctx, v: not v),
}
_AGGREGATES = {"count", "countif", "min", "max", "sum", "dcount", "take_any"}
_COMPARISONS = {"==", "!=", "<", "<=", ">", ">=", "=~", "!~"}
_WORD_OPERATORS = {"has", "contains", "startswith"}


class Parser:
    def __init__(self, text: str, columns: Callable[[], Sequence[str]]) -> None:
        self.tokens = tokenize(text)
        self.i = 0
        self.columns = columns

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def next(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def accept(self, text: str) -> bool:
        if self.tok.kind in ("op", "name") and self.tok.text == text:
            self.i += 1
            return True
        return False

    def expect(self, text: str) -> None:
        if not self.accept(text):
            raise KqlSyntaxError(
                f"expected '{text}' at position {self.tok.pos}, found '{self.tok.text or 'end of query'}'"
            )

    def name(self) -> str:
        tok = self.next()
        if tok.kind != "name":
            raise KqlSyntaxError(f"expected a name at position {tok.pos}, found '{tok.text or 'end of query'}'")
        return str(tok.value)

    # expr := or
    def expr(self) -> Expr:
        left = self.and_expr()
        while self.accept("or"):
            right = self.and_expr()
            left = (lambda a, b: lambda r, c: bool(a(r, c)) or bool(b(r, c)))(left, right)
        return left

    def and_expr(self) -> Expr:
        left = self.comparison()
        while self.accept("and"):
            right = self.comparison()
            left = (lambda a, b: lambda r, c: bool(a(r, c)) and bool(b(r, c)))(left, right)
        return left

    def comparison(self) -> Expr:
        left = self.additive()
        tok = self.tok
        if (tok.kind == "op" and tok.text in _COMPARISONS) or (tok.kind == "name" and tok.text in _WORD_OPERATORS):
            self.next()
            right = self.additive()
            op = tok.text
            return lambda r, c: _cmp(op, left(r, c), right(r, c))
        negate = False
        if tok.kind == "op" and tok.text == "!in":
            negate = True
        elif not (tok.kind == "name" and tok.text == "in"):
            return left
        self.next()
        self.expect("(")
        items = [self.additive()]
        while self.accept(","):
            items.append(self.additive())
        self.expect(")")
        return lambda r, c: (left(r, c) in [item(r, c) for item in items]) != negate

    def additive(self) -> Expr:
        left = self.primary()
        while self.tok.kind == "op" and self.tok.text in ("+", "-"):
            op = self.next().text
            right = self.primary()
            if op == "+":
                left = (lambda a, b: lambda r, c: a(r, c) + b(r, c))(left, right)
            else:
                left = (lambda a, b: lambda r, c: a(r, c) - b(r, c))(left, right)
        return left

    def primary(self) -> Expr:
        tok = self.next()
        if tok.kind in ("number", "string", "timespan", "datetime"):
            value = tok.value
            return lambda r, c: value
        if tok.kind == "op" and tok.text == "(":
            inner = self.expr()
            self.expect(")")
            return inner
        if tok.kind == "op" and tok.text == "-" and self.tok.kind in ("number", "timespan"):
            value = self.next().value
            return lambda r, c: -value
        if tok.kind != "name":
            raise KqlSyntaxError(f"expected an expression at position {tok.pos}, found '{tok.text or 'end of query'}'")
        word = str(tok.value)
        if word in ("true", "false"):
            flag = word == "true"
            return lambda r, c: flag
        if self.tok.kind == "op" and self.tok.text == "(":
            return self.call(word, tok.pos)
        if word not in self.columns():
            raise UnknownColumnError(word)
        return lambda r, c: r.get(word)

    def call(self, func: str, pos: int) -> Expr:
        self.expect("(")
        args: list[Expr] = []
        if not self.accept(")"):
            args.append(self.expr())
            while self.accept(","):
                args.append(self.expr())
            self.expect(")")
        if func == "ingestion_time":
            if args:
                raise KqlSemanticError("ingestion_time() takes no arguments")
            return lambda r, c: r.get("$IngestionTime")
        if func not in _SCALAR_FUNCS:
            raise KqlSemanticError(f"Unknown function: '{func}'")
        arity, fn = _SCALAR_FUNCS[func]
        if len(args) != arity:
            raise KqlSemanticError(f"function '{func}' expects {arity} argument(s), got {len(args)}")
        return lambda r, c: fn(c, *[a(r, c) for a in args])


# ---------------------------------------------------------------- operators


@dataclass
class Result:
    columns: list[str]
    rows: list[Row] = field(default_factory=list)


def _aggregate(func: str, args: list[Expr], rows: list[Row], ctx: Context) -> Any:
    if func == "count":
        return len(rows)
    if func == "countif":
        return sum(1 for r in rows if args[0](r, ctx))
    values = [args[0](r, ctx) for r in rows]
    present = [v for v in values if v is not None]
    if func == "min":
        return min(present) if present else None
    if func == "max":
        return max(present) if present else None
    if func == "sum":
        return sum(present) if present else 0
    if func == "dcount":
        return len({repr(v) for v in present})
    if func == "take_any":
        return present[0] if present else None
    raise KqlSemanticError(f"Unknown aggregation function: '{func}'")


def run_query(text: str, tables: Callable[[str], tuple[list[str], list[Row]]], now: datetime | None = None) -> Result:
    """Run `text` against `tables(name) -> (columns, rows)`; rows may carry `$IngestionTime`."""
    ctx = Context(now=now or datetime.now(UTC))
    if not text.strip():
        raise KqlSyntaxError("the query is empty")
    current_columns: list[str] = []
    parser = Parser(text, lambda: current_columns)
    table = parser.name()
    columns, rows = tables(table)
    current_columns = list(columns)
    rows = list(rows)
    while parser.accept("|"):
        op = parser.name()
        if op == "where":
            predicate = parser.expr()
            rows = [r for r in rows if predicate(r, ctx)]
        elif op == "count":
            rows = [{"Count": len(rows)}]
            current_columns = ["Count"]
        elif op in ("take", "limit"):
            tok = parser.next()
            if tok.kind != "number":
                raise KqlSyntaxError(f"'{op}' needs a number at position {tok.pos}")
            rows = rows[: int(tok.value)]
        elif op in ("project", "extend"):
            outputs: list[tuple[str, Expr]] = []
            while True:
                start = parser.i
                out = parser.name()
                if parser.accept("="):
                    outputs.append((out, parser.expr()))
                else:
                    parser.i = start
                    col = parser.name()
                    if col not in current_columns:
                        raise UnknownColumnError(col)
                    outputs.append((col, _column(col)))
                if not parser.accept(","):
                    break
            new_rows = []
            for r in rows:
                base: Row = dict(r) if op == "extend" else {"$IngestionTime": r.get("$IngestionTime")}
                for out, fn in outputs:
                    base[out] = fn(r, ctx)
                new_rows.append(base)
            rows = new_rows
            names = [o for o, _ in outputs]
            current_columns = ([c for c in current_columns if c not in names] + names) if op == "extend" else names
        elif op in ("order", "sort", "top"):
            limit = None
            if op == "top":
                tok = parser.next()
                if tok.kind != "number":
                    raise KqlSyntaxError(f"'top' needs a number at position {tok.pos}")
                limit = int(tok.value)
            parser.expect("by")
            key = parser.expr()
            descending = True
            if parser.accept("asc"):
                descending = False
            else:
                parser.accept("desc")
            rows = sorted(rows, key=lambda r: (key(r, ctx) is not None, key(r, ctx)), reverse=descending)
            if limit is not None:
                rows = rows[:limit]
        elif op == "summarize":
            aggs: list[tuple[str, str, list[Expr]]] = []
            while (
                not (parser.tok.kind == "name" and parser.tok.text == "by")
                and parser.tok.kind != "end"
                and not (parser.tok.kind == "op" and parser.tok.text == "|")
            ):
                start = parser.i
                out = parser.name()
                if parser.accept("="):
                    func = parser.name()
                else:
                    parser.i = start
                    func = parser.name()
                    out = ""
                if func not in _AGGREGATES:
                    raise KqlSemanticError(f"Unknown aggregation function: '{func}'")
                parser.expect("(")
                args: list[Expr] = []
                if not parser.accept(")"):
                    args.append(parser.expr())
                    parser.expect(")")
                if (func in ("count",) and args) or (func not in ("count",) and len(args) != 1):
                    raise KqlSemanticError(f"aggregation '{func}' got the wrong number of arguments")
                if not out:
                    out = "count_" if func == "count" else f"{func}_{_arg_name(parser, start)}"
                aggs.append((out, func, args))
                if not parser.accept(","):
                    break
            keys: list[str] = []
            if parser.accept("by"):
                keys.append(parser.name())
                while parser.accept(","):
                    keys.append(parser.name())
                for k in keys:
                    if k not in current_columns:
                        raise UnknownColumnError(k)
            if not aggs and not keys:
                raise KqlSyntaxError("summarize needs an aggregation or a 'by' clause")
            groups: dict[tuple[Any, ...], list[Row]] = {}
            for r in rows:
                groups.setdefault(tuple(r.get(k) for k in keys), []).append(r)
            if not keys and not groups:
                groups[()] = []
            rows = []
            for key_values, members in groups.items():
                out_row: Row = dict(zip(keys, key_values, strict=True))
                for out, func, args in aggs:
                    out_row[out] = _aggregate(func, args, members, ctx)
                rows.append(out_row)
            current_columns = keys + [a[0] for a in aggs]
        else:
            raise KqlSyntaxError(f"the operator '{op}' is not supported by this endpoint")
    if parser.tok.kind != "end":
        raise KqlSyntaxError(f"unexpected '{parser.tok.text}' at position {parser.tok.pos}")
    return Result(columns=current_columns, rows=[{c: r.get(c) for c in current_columns} for r in rows])


def _column(name: str) -> Expr:
    return lambda r, c: r.get(name)


def _arg_name(parser: Parser, start: int) -> str:
    # Kusto names `max(ingestion_time())` as `max_ingestion_time` and `max(X)` as `max_X`.
    tokens: Iterator[Token] = iter(parser.tokens[start + 2 : parser.i - 1])
    first = next(tokens, None)
    return str(first.value) if first is not None and first.kind == "name" else "arg"
