"""Constant statements run straight on the DBAPI cursor: the writer's hot path.

A cached Core statement executed through ``Connection.execute`` still costs
40-250 µs of Python per call (cache key, execution context, result set-up);
the same INSERT on pysqlite's cursor costs about 5 µs. The messages, recipient,
event and outbox rows of every accepted message go through here, which is what
lets one group-commit writer keep up with the accept rate (bench/README.md).

Each statement is compiled once per dialect (so PostgreSQL gets its ``$n``
placeholders and casts, SQLite its ``?``), and the type's own bind processors
(JSON, Boolean, ...) are applied to the parameters, so the stored values are
exactly what ``Connection.execute`` would store. Only positional paramstyles
are supported (pysqlite: qmark, asyncpg: numeric_dollar), and no expanding
``IN`` lists: statements that need those stay on ``Connection.execute``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Connection, Dialect

_Processor = Callable[[Any], Any] | None


class _Compiled:
    __slots__ = ("_attrs", "_converted", "_get", "names", "processors", "sql")

    def __init__(self, sql: str, names: tuple[str, ...], processors: tuple[_Processor, ...]):
        self.sql = sql
        self.names = names
        self.processors = processors
        # One C-level lookup of all values, then the few typed conversions by position:
        # half the cost of a per-name generator, and this runs for every row written.
        self._get: Callable[[Mapping[str, Any]], Any]
        self._attrs: Callable[[object], Any]
        if len(names) == 1:  # the C getters return a bare value for a single name
            name = names[0]
            self._get = lambda values: (values[name],)
            self._attrs = lambda obj: (getattr(obj, name),)
        elif names:
            self._get = operator.itemgetter(*names)
            self._attrs = operator.attrgetter(*names)
        else:
            self._get = self._attrs = lambda _source: ()
        self._converted = tuple((i, proc) for i, proc in enumerate(processors) if proc is not None)

    def params(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        # A missing name raises KeyError: a fast statement has no defaults to fill in.
        return self._typed(self._get(values))

    def params_of(self, obj: object) -> tuple[Any, ...]:
        """The parameters read straight off an object whose attributes are named like
        the columns (a dataclass row), without building a dict of it first."""
        return self._typed(self._attrs(obj))

    def _typed(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        if not self._converted:
            return row
        out = list(row)
        for i, proc in self._converted:
            out[i] = proc(out[i])
        return tuple(out)


class FastStatement:
    """A constant statement (``column_keys``: the INSERT's columns, in any order)."""

    __slots__ = ("_by_dialect", "column_keys", "statement")

    def __init__(self, statement: Any, column_keys: Sequence[str] | None = None) -> None:
        self.statement = statement
        self.column_keys = list(column_keys) if column_keys is not None else None
        self._by_dialect: dict[str, _Compiled] = {}

    def _compiled(self, dialect: Dialect) -> _Compiled:
        compiled = self._by_dialect.get(dialect.name)
        if compiled is None:
            if dialect.paramstyle not in ("qmark", "numeric_dollar", "format"):
                raise NotImplementedError(f"paramstyle {dialect.paramstyle} is not positional")
            c: Any = self.statement.compile(dialect=dialect, column_keys=self.column_keys)
            names = tuple(c.positiontup or ())
            procs = c._bind_processors  # the types' own conversions (JSON, Boolean, ...)
            compiled = _Compiled(c.string, names, tuple(procs.get(n) for n in names))
            self._by_dialect[dialect.name] = compiled
        return compiled

    def execute(self, conn: Connection, values: Mapping[str, Any]) -> Any:
        """Run once; returns the DBAPI cursor (rowcount, fetchone for RETURNING)."""
        compiled = self._compiled(conn.dialect)
        return self._run_one(conn, compiled.sql, compiled.params(values))

    def rowcount(self, conn: Connection, values: Mapping[str, Any]) -> int:
        cursor = self.execute(conn, values)
        count = int(cursor.rowcount or 0)
        cursor.close()
        return count

    def scalar(self, conn: Connection, values: Mapping[str, Any]) -> Any:
        """The first column of the first row (an INSERT ... RETURNING id)."""
        cursor = self.execute(conn, values)
        row = cursor.fetchone()
        cursor.close()
        return None if row is None else row[0]

    def first_column(self, conn: Connection, values: Mapping[str, Any]) -> list[Any]:
        """The first column of every row (ids from a SELECT or an UPDATE ... RETURNING)."""
        cursor = self.execute(conn, values)
        rows = cursor.fetchall()
        cursor.close()
        return [row[0] for row in rows]

    def executemany(self, conn: Connection, rows: Iterable[Mapping[str, Any]]) -> None:
        compiled = self._compiled(conn.dialect)
        self._run_many(conn, compiled.sql, [compiled.params(row) for row in rows])

    def execute_object(self, conn: Connection, obj: object) -> Any:
        """``execute`` with the values read off ``obj``'s attributes (see params_of)."""
        compiled = self._compiled(conn.dialect)
        return self._run_one(conn, compiled.sql, compiled.params_of(obj))

    def executemany_objects(self, conn: Connection, objects: Iterable[object]) -> None:
        """``executemany`` with each row's values read off an object's attributes."""
        compiled = self._compiled(conn.dialect)
        self._run_many(conn, compiled.sql, [compiled.params_of(obj) for obj in objects])

    @staticmethod
    def _run_one(conn: Connection, sql: str, params: tuple[Any, ...]) -> Any:
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        cursor.execute(sql, params)
        return cursor

    @staticmethod
    def _run_many(conn: Connection, sql: str, params: list[tuple[Any, ...]]) -> None:
        if params:
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            cursor.executemany(sql, params)
            cursor.close()
