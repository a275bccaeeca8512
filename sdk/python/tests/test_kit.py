"""The Python kit, natively: schemas from annotations, argument checks,
results, errors, roles and the manifest section. Run by `scripts/dev test`
(`python3 -m unittest discover -s sdk/python/tests`); the same kit built
into a component is tested through warden in runtime/cli/tests/all/kits.rs.
"""

import enum
import json
import sys
import unittest
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, NotRequired, Optional, TypedDict

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import warden_plugin as warden  # noqa: E402
from warden_plugin import _role, _schema, _tools, build  # noqa: E402


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass
class Point:
    """A point on the plane."""

    x: int
    y: float = 0.0
    tags: list[str] = field(default_factory=list)


class Options(TypedDict, total=False):
    depth: int


class Strict(TypedDict):
    name: str
    note: NotRequired[str]


class Half(enum.Enum):
    ONE = 1.0


@dataclass
class Checked:
    n: int
    derived: int = field(init=False, default=0)

    def __post_init__(self):
        if self.n < 0:
            raise ValueError("n must not be negative")


def fresh(test):
    """Runs a test with an empty tool registry."""

    def run(self):
        saved = dict(_tools._TOOLS)
        _tools._TOOLS.clear()
        try:
            test(self)
        finally:
            _tools._TOOLS.clear()
            _tools._TOOLS.update(saved)

    return run


class SchemaTest(unittest.TestCase):
    def test_annotations_become_json_schema(self):
        s = lambda tp: _schema.schema_of(tp, "t")  # noqa: E731
        self.assertEqual(s(str), {"type": "string"})
        self.assertEqual(s(Optional[int]), {"anyOf": [{"type": "integer"}, {"type": "null"}]})
        self.assertEqual(s(int | None), {"anyOf": [{"type": "integer"}, {"type": "null"}]})
        self.assertEqual(s(list[float]), {"type": "array", "items": {"type": "number"}})
        self.assertEqual(s(dict[str, bool]), {"type": "object", "additionalProperties": {"type": "boolean"}})
        self.assertEqual(s(Literal["a", "b"]), {"enum": ["a", "b"]})
        self.assertEqual(s(Colour), {"enum": ["red", "blue"]})
        self.assertEqual(s(Annotated[str, "who"]), {"type": "string", "description": "who"})
        point = s(Point)
        self.assertEqual(point["required"], ["x"])
        self.assertFalse(point["additionalProperties"])
        self.assertEqual(point["description"], "A point on the plane.")
        self.assertNotIn("required", s(Options))
        self.assertEqual(s(Strict)["required"], ["name"])
        self.assertEqual(s(Literal[Colour.RED, 2]), {"enum": ["red", 2]})
        self.assertEqual(list(s(Checked)["properties"]), ["n"])
        # A dataclass's own checks refuse bad arguments, as arguments.
        with self.assertRaisesRegex(_schema.ArgumentError, "c: n must not be negative"):
            _schema.convert({"n": -1}, Checked, "c")
        with self.assertRaisesRegex(_schema.ArgumentError, "unknown `derived`"):
            _schema.convert({"n": 1, "derived": 2}, Checked, "c")

    def test_an_annotation_without_a_schema_is_refused_naming_it(self):
        with self.assertRaisesRegex(_schema.SchemaError, r"t: set\[int\] has no JSON Schema"):
            _schema.schema_of(set[int], "t")
        with self.assertRaisesRegex(_schema.SchemaError, "keys that are not strings"):
            _schema.schema_of(dict[int, str], "t")

    def test_values_are_checked_and_converted(self):
        c = _schema.convert
        self.assertEqual(c({"x": 1, "y": 2}, Point, "p"), Point(1, 2.0))
        self.assertIs(c("red", Colour, "c"), Colour.RED)
        self.assertEqual(c(3.0, int, "n"), 3)
        self.assertIsNone(c(None, Optional[str], "o"))
        # JSON equality: true is not 1, 1 is 1.0.
        self.assertIs(c(1, Literal[1, True], "l"), 1)
        self.assertIs(c(True, Literal[1, True], "l"), True)
        self.assertEqual(c(0, Literal[0, False, "a"], "l"), 0)
        self.assertIs(c(1, Half, "h"), Half.ONE)
        for value, tp, message in [
            (True, int, "n: expected an integer, got a boolean"),
            ("3", int, "n: expected an integer, got a string"),
            ([1, "a"], list[int], r"n\[1\]: expected an integer"),
            ({"x": 1, "z": 2}, Point, "n: unknown `z`; it takes x, y, tags"),
            ({"y": 1}, Point, "n: missing `x`"),
            ("green", Colour, 'n: expected one of "red", "blue", got "green"'),
            (1, Literal["1"], 'expected one of "1", got 1'),
            (1, Literal[True, "a"], 'expected one of true, "a", got 1'),
        ]:
            with self.assertRaisesRegex(_schema.ArgumentError, message):
                c(value, tp, "n")

    def test_results_must_be_json(self):
        self.assertEqual(_schema.to_json_value({"p": Point(1), "c": Colour.BLUE, "t": (1, 2)}),
                         {"p": {"x": 1, "y": 0.0, "tags": []}, "c": "blue", "t": [1, 2]})
        for bad, message in [({1, 2}, "is a set"), (float("nan"), "JSON cannot carry"), ({1: "a"}, "not a string")]:
            with self.assertRaisesRegex(TypeError, message):
                _schema.to_json_value(bad)


class ToolTest(unittest.TestCase):
    @fresh
    def test_a_tool_is_listed_with_its_schema_and_docstring(self):
        @warden.tool
        def area(p: Point, scale: int = 1) -> float:
            """The area under a point.

            Args:
                p: The point.
                scale: A factor
                    applied last.
            """
            return p.x * p.y * scale

        [listed] = warden.list_tools()
        self.assertEqual(listed["name"], "area")
        self.assertEqual(listed["description"], "The area under a point.")
        schema = listed["input_schema"]
        self.assertEqual(schema["required"], ["p"])
        self.assertEqual(schema["properties"]["scale"], {"type": "integer", "description": "A factor applied last.", "default": 1})
        self.assertEqual(json.loads(warden.call("area", '{"p": {"x": 2, "y": 3}, "scale": 2}')), 12.0)

    @fresh
    def test_bad_declarations_are_refused_when_declared(self):
        with self.assertRaisesRegex(ValueError, "give it a docstring"):
            @warden.tool
            def nodoc(a: int):
                return a
        with self.assertRaisesRegex(TypeError, r"\*args and \*\*kwargs have no schema"):
            @warden.tool
            def splat(*a: int):
                """Splat."""
        with self.assertRaisesRegex(ValueError, "tool name 'Bad Name'"):
            warden.tool(name="Bad Name")(lambda: None)
        with self.assertRaisesRegex(TypeError, "positional-only"):
            @warden.tool
            def positional(a: int, /):
                """Positional."""

        @warden.tool
        def twice():
            """Once."""
        with self.assertRaisesRegex(ValueError, "two tools are named 'twice'"):
            @warden.tool(name="twice")
            def again():
                """Twice."""

    @fresh
    def test_every_failure_is_a_tool_error_of_the_right_kind(self):
        @warden.tool
        def work(how: str):
            """Works, or not."""
            if how == "denied":
                raise warden.Denied("no")
            if how == "zero":
                return 1 / 0
            if how == "set":
                return {1}
            if how == "exit":
                raise SystemExit(2)
            if how == "import":
                import not_a_module_anywhere  # noqa: F401
            if how == "deep":
                def f(n):
                    return f(n + 1)
                return f(0)
            return how

        def kind(args):
            try:
                warden.call("work", args)
            except warden.ToolError as e:
                return e.kind, e.message
            return None

        self.assertEqual(kind('{"how": "denied"}'), ("denied", "no"))
        self.assertEqual(kind('{"how": "zero"}'), ("failed", "work: ZeroDivisionError: division by zero"))
        self.assertEqual(kind('{"how": "set"}')[0], "failed")
        self.assertEqual(kind('{"how": "exit"}'), ("failed", "work: SystemExit: 2"))
        self.assertIn("import it at the top of the module", kind('{"how": "import"}')[1])
        self.assertEqual(kind('{"how": "deep"}')[1], "work: RecursionError: maximum recursion depth exceeded")
        self.assertEqual(kind("not json")[0], "invalid-arguments")
        self.assertEqual(kind("[]"), ("invalid-arguments", "work: the arguments must be a JSON object, got an array"))
        self.assertEqual(kind("{}"), ("invalid-arguments", "work: missing `how`"))
        self.assertEqual(kind('{"how": 1}'), ("invalid-arguments", "work: how: expected a string, got an integer"))
        self.assertEqual(kind('{"how": "x", "extra": 1}'), ("invalid-arguments", "work: unknown `extra`; it takes how"))
        with self.assertRaisesRegex(warden.UnknownTool, "no tool 'nope' in this plugin; it has: work"):
            warden.call("nope")
        self.assertEqual(kind('{"how": NaN}'), ("invalid-arguments", "work: the arguments are not JSON: NaN is not JSON"))
        self.assertEqual(kind("[" * 100000 + "]" * 100000),
                         ("invalid-arguments", "work: the arguments are nested too deeply"))

    @fresh
    def test_a_none_default_takes_null(self):
        @warden.tool
        def maybe(n: int = None):
            """Maybe a number."""
            return n

        self.assertEqual(warden.call("maybe", '{"n": null}'), "null")
        self.assertEqual(warden.call("maybe", '{"n": 2}'), "2")
        self.assertEqual(warden.list_tools()[0]["input_schema"]["properties"]["n"]["anyOf"][1], {"type": "null"})

    def test_host_interfaces_say_they_need_warden_natively(self):
        for call in (lambda: warden.http.get("https://example.com"), lambda: warden.llm.ask("hi"),
                     lambda: warden.memory.store("n", "c"), lambda: warden.tools.call("fs.read_file")):
            with self.assertRaisesRegex(warden.Failed, "only available inside warden"):
                call()

    def test_a_denied_ipv6_host_is_named_as_a_grant_would_name_it(self):
        from warden_plugin.http import _Target

        self.assertIn("--allow-host http://[::1]:8080", _Target.parse("http://[::1]:8080/x").denied().message)

    def test_http_urls_are_checked_before_anything_is_sent(self):
        for url, message in [("ftp://x/", "scheme 'ftp' is not supported"), ("http:///p", "no host"),
                             ("http://h:99999/", "out of range")]:
            with self.assertRaisesRegex(warden.InvalidArguments, message):
                warden.http.get(url)
        with self.assertRaisesRegex(warden.InvalidArguments, "method 'BREW'"):
            warden.http.request("brew", "http://h/")


class RoleTest(unittest.TestCase):
    def setUp(self):
        self.saved = list(_role._ROLE)
        _role._ROLE.clear()

    def tearDown(self):
        _role._ROLE[:] = self.saved

    def test_a_role_is_declared_once(self):
        with self.assertRaisesRegex(LookupError, "no role"):
            _role.declared()
        warden.role(name="sum", description="d", tools=["fs"])(lambda task: "done")
        self.assertEqual(_role.declared().tools, ["fs"])
        with self.assertRaisesRegex(ValueError, "a plugin has one role"):
            warden.role(name="other", description="d")(lambda task: "x")
        with self.assertRaisesRegex(ValueError, "role name 'Sum'"):
            warden.role(name="Sum", description="d")

    def test_outcomes_and_errors(self):
        self.assertEqual(_role.outcome_of("s"), warden.Outcome(summary="s"))
        with self.assertRaisesRegex(TypeError, "not a dict"):
            _role.outcome_of({})
        self.assertEqual(_role.describe_error(warden.InvalidTask("x")), ("invalid-task", "x"))
        self.assertEqual(_role.describe_error(warden.Denied("no")), ("denied", "no"))
        self.assertEqual(_role.describe_error(KeyError("x")), ("failed", "role: KeyError: 'x'"))

        class Unprintable(Exception):
            def __str__(self):
                raise RuntimeError("no")

        self.assertEqual(
            _role.describe_error(Unprintable()), ("failed", "role: Unprintable (its message could not be read)")
        )
        # What the host would fail to read is refused here, naming the field.
        for bad, message in [
            (warden.Outcome(summary=1), "Outcome.summary is a str"),
            (warden.Outcome(summary="s", artifacts=[Path("x")]), "Outcome.artifacts is a list of str"),
            (warden.Outcome(summary="s", follow_ups=[{"id": "x"}]), "Outcome.follow_ups is a list of NewTask"),
            (warden.Outcome(summary="s", follow_ups=[warden.NewTask("a", "r", "i", priority=2**40)]),
             "NewTask.priority is an int that fits 32 bits"),
        ]:
            with self.assertRaisesRegex(TypeError, message):
                _role.outcome_of(bad)
        with self.assertRaisesRegex(ValueError, "`tools` is a list of plugin names"):
            warden.role(name="t", description="d", tools="fs")

    def test_the_brief_names_the_task_and_what_came_before(self):
        task = warden.Task(id="t", goal="G", instructions="I", input={"k": 1},
                           dependencies=[warden.Dependency("a", "coder", "wrote x", None, ["x.py"])],
                           attempt=2, last_error="boom")
        brief = task.brief()
        for part in ("Goal of the run: G", "Your task (t): I", 'Input: {"k":1}', "by coder (a): wrote x",
                     "Files: x.py", "Attempt 1 failed with: boom"):
            self.assertIn(part, brief)


class BuildTest(unittest.TestCase):
    def test_the_manifest_section_is_a_wasm_custom_section(self):
        data = b"x" * 200
        section = build.custom_section("warden:manifest", data)
        # id 0, size 216 as LEB128 (0xd8 0x01), name length 15, name, data.
        self.assertEqual(section[:4], b"\x00\xd8\x01\x0f")
        self.assertEqual(section[4:19], b"warden:manifest")
        self.assertEqual(section[19:], data)

    def test_a_project_without_a_usable_manifest_is_refused(self):
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            with self.assertRaisesRegex(build.BuildError, "cannot read .*warden.toml"):
                build.manifest(Path(d))
            (Path(d) / "warden.toml").write_text('name = "x"\nkind = "widget"\n')
            with self.assertRaisesRegex(build.BuildError, "kind 'widget'"):
                build.manifest(Path(d))
            (Path(d) / "warden.toml").write_text('name = "x"\nkind = "tool"\n')
            with self.assertRaisesRegex(build.BuildError, "no app.py"):
                build.build(Path(d))


if __name__ == "__main__":
    unittest.main()
