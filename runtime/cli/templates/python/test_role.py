"""The role's own logic, natively: `python3 -m unittest`."""

import unittest

import app
import warden_plugin as warden


class PromptTest(unittest.TestCase):
    def test_names_the_task_and_what_came_before(self):
        task = warden.Task(
            id="sum",
            goal="Ship the parser",
            instructions="Summarise the work",
            input=None,
            dependencies=[warden.Dependency("code", "coder", "wrote parser.py", None, [])],
        )
        text = app.prompt(task)
        self.assertIn("Summarise the work", text)
        self.assertIn("wrote parser.py", text)


if __name__ == "__main__":
    unittest.main()
