"""The tools, natively: `python3 -m unittest` (with warden_plugin installed)."""

import json
import unittest

import app  # noqa: F401 - declares the tools
import warden_plugin as warden


class GreetTest(unittest.TestCase):
    def test_greets(self):
        out = json.loads(warden.call("greet", '{"name": "Ada", "excited": true}'))
        self.assertEqual(out, {"message": "Hello, Ada!"})

    def test_refuses_an_empty_name(self):
        with self.assertRaises(warden.InvalidArguments):
            warden.call("greet", '{"name": ""}')

    def test_checks_the_arguments_types(self):
        with self.assertRaisesRegex(warden.InvalidArguments, "name: expected a string"):
            warden.call("greet", '{"name": 7}')


if __name__ == "__main__":
    unittest.main()
