#!/usr/bin/python3
"""Prints one closing line 'N passed, N failed, N skipped' over TRX files.

A test is identified by its class and name. The same test may appear in several files (the interop tests run once
under `dotnet test` and once live through scripts/torch-run, where TorchSharp can run): it counts once, as failed if
it failed in any run, else passed if it passed in any run, else skipped. Exit 1 when any test failed or no test ran.
"""
import sys
import xml.etree.ElementTree as ET

NS = "{http://microsoft.com/schemas/VisualStudio/TeamTest/2010}"
outcomes = {}
for path in sys.argv[1:]:
    root = ET.parse(path).getroot()
    classes = {}
    for test in root.iter(NS + "UnitTest"):
        method = test.find(NS + "TestMethod")
        classes[test.get("id")] = method.get("className") if method is not None else ""
    for result in root.iter(NS + "UnitTestResult"):
        key = (classes.get(result.get("testId"), ""), result.get("testName"))
        outcome = result.get("outcome")
        state = "failed" if outcome in ("Failed", "Error", "Timeout", "Aborted") else "passed" if outcome == "Passed" else "skipped"
        previous = outcomes.get(key)
        rank = {"skipped": 0, "passed": 1, "failed": 2}
        if previous is None or rank[state] > rank[previous]:
            outcomes[key] = state
counts = {s: sum(1 for v in outcomes.values() if v == s) for s in ("passed", "failed", "skipped")}
print(f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
sys.exit(1 if counts["failed"] or not counts["passed"] else 0)
