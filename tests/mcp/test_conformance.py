"""The official MCP conformance suite (npm ``@modelcontextprotocol/conformance``, pinned in
``conformance-suite/``) against the lab's /mcp, once per revision the lab serves.

A requirement set runs every server scenario its revision requires, at that revision's
wire (2025-11-25: the initialize handshake and a session; 2026-07-28: stateless, ``_meta``
on every request), plus some it runs without scoring (extensions, pending scenarios). Many
target what the lab leaves out (resources, prompts, completion, sampling, elicitation,
roots, tasks) or call the tools of the suite's reference server by name. So the verdict is
check by check, against CHECKS below: a check that exercises what the lab implements must
pass; every other one is listed with the verdict it gets today and why it does not apply.
The test fails when an applicable check stops passing, and also when a check that does not
apply changes its verdict (the lab or the suite started exercising it: reclassify it).

A second test gives the lab's own tools the names of the suite's fixture tools
(``test_tool_with_progress`` is ``stream_tokens``, ...), so that the progress, tool-error,
text-result, priming-event and no-log-without-logLevel checks exercise the lab too.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from lab.apps.mcp import TOOLS, McpEndpoint
from tests.mcp import conformance
from tests.mcp.helpers import app_for

pytestmark = pytest.mark.interop

LEGACY = "2025-11-25"
MODERN = "2026-07-28"
REVISIONS = (LEGACY, MODERN)

# Why a check does not apply (the last column of CHECKS).
WHY = {
    "resources": "resources are not implemented: resources/* answer -32601",
    "prompts": "prompts are not implemented: prompts/* answer -32601",
    "completion": "completion/complete is not implemented (-32601)",
    "asks-client": (
        "sampling, elicitation and roots are not implemented: no lab tool asks the client "
        "anything (no server-to-client request, no 2026-07-28 input-required result)"
    ),
    "fixture-tool": (
        "calls a tool of the suite's reference server by name, which the lab does not have "
        "(Unknown tool); test_suite_fixture_tools_are_the_lab_tools runs the lab's tools "
        "under such names"
    ),
    "content": "needs a fixture tool with image, audio or resource content: lab tools return text",
    "schema-tool": "needs the fixture tool json_schema_2020_12_tool (a 2020-12 inputSchema)",
    "capability": (
        "needs a tool that requires an undeclared client capability (sampling) to provoke "
        "-32021; no lab tool needs one"
    ),
    "subscriptions": (
        "subscriptions/listen and list-changed notifications are not implemented (the lab "
        "declares listChanged: false), so the suite skips these"
    ),
    "custom-headers": (
        "SEP-2243 Mcp-Param-* headers: no lab tool declares an x-mcp-header parameter, so "
        "there is nothing to probe"
    ),
    "tasks": "the tasks extension (SEP-2663) is not implemented",
    "json-only": (
        "report only: the scenario's concurrent tools/list calls get JSON (only stream_tokens "
        "answers with SSE), so its SSE half has nothing to read"
    ),
    "vacuous": "passes without exercising the lab: the feature it checks is not implemented",
}

# Every check of both requirement sets (suite 0.2.0-alpha.12), by scenario: check id, its
# verdict at 2025-11-25 and at 2026-07-28 ("-": not run there), and why it does not apply
# (a key of WHY; "-": it applies, and its verdict is SUCCESS). wire-schema-valid is the
# suite's validation of every message the lab sent against the revision's JSON schema: it
# applies in every scenario, including the ones whose subject does not.
CHECKS = """
server-initialize
  server-initialize                                               SUCCESS  -        -
  server-session-id-visible-ascii                                 SUCCESS  -        -
  wire-schema-valid                                               SUCCESS  -        -
# Added after 2025-11-25 was released: run, never scored. It applies all the same.
server-session-lifecycle
  server-session-initialized-accepted                             SUCCESS  -        -
  server-session-delete-accepted                                  SUCCESS  -        -
  server-session-terminated-returns-404                           SUCCESS  -        -
server-stateless
  sep-2575-request-meta-invalid-missing-meta                      -        SUCCESS  -
  sep-2575-http-server-meta-invalid-400                           -        SUCCESS  -
  sep-2575-request-meta-invalid-missing-protocol-version          -        SUCCESS  -
  sep-2575-request-meta-invalid-missing-client-capabilities       -        SUCCESS  -
  sep-2575-request-meta-client-info-optional                      -        SUCCESS  -
  sep-2575-server-implements-discover                             -        SUCCESS  -
  sep-2575-server-identifies-in-result-meta                       -        SUCCESS  -
  sep-2575-server-declares-prompts-in-discover                    -        SUCCESS  -
  sep-2575-discover-capabilities-match-handlers                   -        SUCCESS  -
  sep-2575-server-unsupported-version-error                       -        SUCCESS  -
  sep-2575-http-server-unsupported-version-400                    -        SUCCESS  -
  sep-2575-http-server-header-mismatch-400                        -        SUCCESS  -
  sep-2575-server-rejects-undeclared-capability                   -        FAILURE  capability
  sep-2575-missing-capability-http-400                            -        FAILURE  capability
  # 404-initialize got 400/-32600 until transport.py routed initialize by its header.
  sep-2575-http-server-method-not-found-404-initialize            -        SUCCESS  -
  sep-2575-http-server-method-not-found-404-ping                  -        SUCCESS  -
  sep-2575-http-server-method-not-found-404-logging-setlevel      -        SUCCESS  -
  sep-2575-http-server-method-not-found-404-resources-subscribe   -        SUCCESS  -
  sep-2575-http-server-method-not-found-404-resources-unsubscribe -        SUCCESS  -
  sep-2575-http-server-method-not-found-404                       -        SUCCESS  -
  sep-2575-http-server-no-independent-requests-on-stream          -        FAILURE  asks-client
  sep-2575-server-no-log-without-loglevel                         -        FAILURE  fixture-tool
  sep-2575-server-sends-subscription-ack                          -        SKIPPED  subscriptions
  sep-2575-server-tags-subscription-id                            -        SKIPPED  subscriptions
  sep-2575-server-honors-notification-filter                      -        SKIPPED  subscriptions
  sep-2575-server-sends-prompts-list-changed-on-subscription      -        SKIPPED  subscriptions
  sep-2575-server-sends-tools-list-changed-on-subscription        -        SKIPPED  subscriptions
  sep-2575-http-server-error-jsonrpc-id                           -        SUCCESS  -
logging-set-level
  logging-set-level                                               SUCCESS  -        -
  wire-schema-valid                                               SUCCESS  -        -
ping
  ping                                                            SUCCESS  -        -
  wire-schema-valid                                               SUCCESS  -        -
completion-complete
  completion-complete                                             FAILURE  FAILURE  completion
  wire-schema-valid                                               SUCCESS  SUCCESS  -
tools-list
  tools-list                                                      SUCCESS  SUCCESS  -
  tools-name-format                                               SUCCESS  SUCCESS  -
  tools-list-deterministic-order                                  -        SUCCESS  -
  wire-schema-valid                                               SUCCESS  SUCCESS  -
tools-call-simple-text
  tools-call-simple-text                                          FAILURE  FAILURE  fixture-tool
  wire-schema-valid                                               SUCCESS  SUCCESS  -
tools-call-image
  tools-call-image                                                FAILURE  FAILURE  content
  wire-schema-valid                                               SUCCESS  SUCCESS  -
tools-call-audio
  tools-call-audio                                                FAILURE  FAILURE  content
  wire-schema-valid                                               SUCCESS  SUCCESS  -
tools-call-embedded-resource
  tools-call-embedded-resource                                    FAILURE  FAILURE  content
  wire-schema-valid                                               SUCCESS  SUCCESS  -
tools-call-mixed-content
  tools-call-mixed-content                                        FAILURE  FAILURE  content
  wire-schema-valid                                               SUCCESS  SUCCESS  -
# Logging applies, but the fixture tool must send 3 log messages and stream_tokens
# sends 2 (started, finished), so no stand-in passes it.
tools-call-with-logging
  tools-call-with-logging                                         FAILURE  -        fixture-tool
  wire-schema-valid                                               SUCCESS  -        -
tools-call-error
  tools-call-error                                                FAILURE  FAILURE  fixture-tool
  wire-schema-valid                                               SUCCESS  SUCCESS  -
tools-call-with-progress
  tools-call-with-progress                                        FAILURE  FAILURE  fixture-tool
  wire-schema-valid                                               SUCCESS  SUCCESS  -
tools-call-sampling
  tools-call-sampling                                             FAILURE  -        asks-client
  wire-schema-valid                                               SUCCESS  -        -
tools-call-elicitation
  tools-call-elicitation                                          FAILURE  -        asks-client
  wire-schema-valid                                               SUCCESS  -        -
# Pending (run, never scored) in both sets.
json-schema-2020-12
  json-schema-2020-12-tool-found                                  FAILURE  FAILURE  schema-tool
  wire-schema-valid                                               SUCCESS  SUCCESS  -
elicitation-sep1034-defaults
  elicitation-sep1034-general                                     FAILURE  -        asks-client
  wire-schema-valid                                               SUCCESS  -        -
# Pending: calls the fixture tool test_reconnection, gets a JSON error and only reports.
server-sse-polling
  outgoing-request                                                INFO     -        fixture-tool
  incoming-response                                               INFO     -        fixture-tool
  server-sse-content-type                                         INFO     -        fixture-tool
server-sse-multiple-streams
  server-accepts-multiple-post-streams                            SUCCESS  SUCCESS  -
  server-sse-streams-functional                                   INFO     INFO     json-only
elicitation-sep1330-enums
  elicitation-sep1330-general                                     FAILURE  -        asks-client
  wire-schema-valid                                               SUCCESS  -        -
resources-list
  resources-list                                                  FAILURE  FAILURE  resources
  wire-schema-valid                                               SUCCESS  SUCCESS  -
resources-read-text
  resources-read-text                                             FAILURE  FAILURE  resources
  wire-schema-valid                                               SUCCESS  SUCCESS  -
resources-read-binary
  resources-read-binary                                           FAILURE  FAILURE  resources
  wire-schema-valid                                               SUCCESS  SUCCESS  -
resources-templates-read
  resources-templates-read                                        FAILURE  FAILURE  resources
  wire-schema-valid                                               SUCCESS  SUCCESS  -
resources-subscribe
  resources-subscribe                                             FAILURE  -        resources
  wire-schema-valid                                               SUCCESS  -        -
resources-unsubscribe
  resources-unsubscribe                                           FAILURE  -        resources
  wire-schema-valid                                               SUCCESS  -        -
sep-2164-resource-not-found
  sep-2164-no-empty-contents                                      -        SUCCESS  vacuous
  sep-2164-error-code                                             -        WARNING  resources
  sep-2164-data-uri                                               -        WARNING  resources
  wire-schema-valid                                               -        SUCCESS  -
prompts-list
  prompts-list                                                    FAILURE  FAILURE  prompts
  wire-schema-valid                                               SUCCESS  SUCCESS  -
prompts-get-simple
  prompts-get-simple                                              FAILURE  FAILURE  prompts
  wire-schema-valid                                               SUCCESS  SUCCESS  -
prompts-get-with-args
  prompts-get-with-args                                           FAILURE  FAILURE  prompts
  wire-schema-valid                                               SUCCESS  SUCCESS  -
prompts-get-embedded-resource
  prompts-get-embedded-resource                                   FAILURE  FAILURE  prompts
  wire-schema-valid                                               SUCCESS  SUCCESS  -
prompts-get-with-image
  prompts-get-with-image                                          FAILURE  FAILURE  prompts
  wire-schema-valid                                               SUCCESS  SUCCESS  -
dns-rebinding-protection
  localhost-host-rebinding-rejected                               SUCCESS  SUCCESS  -
  localhost-host-valid-accepted                                   SUCCESS  SUCCESS  -
caching
  sep-2549-tools-list-caching-hints                               -        SUCCESS  -
  sep-2549-prompts-list-caching-hints                             -        FAILURE  prompts
  sep-2549-resources-list-caching-hints                           -        FAILURE  resources
  sep-2549-resources-templates-list-caching-hints                 -        FAILURE  resources
  sep-2549-resources-read-caching-hints                           -        SKIPPED  resources
  sep-2549-ttl-non-negative                                       -        SUCCESS  -
  sep-2549-cache-scope-valid                                      -        SUCCESS  -
  wire-schema-valid                                               -        SUCCESS  -
# Pending, both: the lab passes the first and has nothing for the second to probe.
http-header-validation
  sep-2243-server-reject-invalid-headers                          -        SUCCESS  -
  sep-2243-server-reject-error-code                               -        SUCCESS  -
  sep-2243-server-accepts-whitespace-header-value                 -        SUCCESS  -
  sep-2243-header-name-case-insensitive                           -        SUCCESS  -
  wire-schema-valid                                               -        SUCCESS  -
http-custom-header-server-validation
  sep-2243-server-no-xmcp-tool                                    -        FAILURE  custom-headers
  sep-2243-server-decode-base64                                   -        FAILURE  custom-headers
  sep-2243-server-validate-param-match                            -        FAILURE  custom-headers
  sep-2243-server-reject-invalid-param-chars                      -        FAILURE  custom-headers
  sep-2243-server-reject-param-mismatch                           -        FAILURE  custom-headers
  wire-schema-valid                                               -        SUCCESS  -
# The tasks extension (never scored). tasks-headers-reject-mismatched-method checks the
# lab's own Mcp-Method rule, so it applies.
tasks-lifecycle
  tasks-sync-tool-call                                            -        FAILURE  tasks
  sep-2663-result-type-task-on-create                             -        FAILURE  tasks
  sep-2663-tasks-get-status-working                               -        FAILURE  tasks
  sep-2663-tasks-get-status-completed                             -        FAILURE  tasks
  sep-2663-tool-error-uses-completed-status                       -        FAILURE  tasks
  sep-2663-tasks-get-status-failed                                -        FAILURE  tasks
  sep-2663-cancel-ack-empty-result                                -        FAILURE  tasks
  tasks-cancel-terminal-idempotent-ack                            -        FAILURE  tasks
  wire-schema-valid                                               -        SUCCESS  -
tasks-capability-negotiation
  tasks-extension-advertised                                      -        FAILURE  tasks
  sep-2663-tasks-methods-non-declaring                            -        FAILURE  tasks
  sep-2663-server-rejects-undeclared-client                       -        FAILURE  tasks
  tasks-per-request-meta-opt-in                                   -        FAILURE  tasks
  wire-schema-valid                                               -        SUCCESS  -
tasks-wire-fields
  tasks-wire-field-renames                                        -        FAILURE  tasks
  tasks-no-early-ttl-expiry                                       -        FAILURE  tasks
  tasks-no-related-task-meta-on-inlined-result                    -        FAILURE  tasks
  wire-schema-valid                                               -        SUCCESS  -
tasks-request-state-removal
  tasks-request-state-removal-setup                               -        FAILURE  tasks
  wire-schema-valid                                               -        SUCCESS  -
tasks-mrtr-input
  sep-2663-tasks-get-status-input-required                        -        FAILURE  tasks
  tasks-mrtr-tasks-update-resumes                                 -        FAILURE  tasks
  tasks-mrtr-partial-fulfillment                                  -        FAILURE  tasks
  wire-schema-valid                                               -        SUCCESS  -
tasks-request-headers
  tasks-headers-tolerate-mcp-method-on-tools-call                 -        FAILURE  tasks
  sep-2663-routing-headers-accepted-on-tasks-get                  -        FAILURE  tasks
  tasks-headers-reject-mismatched-method                          -        SUCCESS  -
  sep-2663-server-rejects-mismatched-mcp-name-on-tasks-get        -        FAILURE  tasks
  wire-schema-valid                                               -        SUCCESS  -
tasks-dispatch-and-envelope
  sep-2663-tasks-result-removed-method-not-found                  -        SUCCESS  vacuous
  tasks-removed-tasks-list                                        -        SUCCESS  vacuous
  tasks-server-directed-creation-no-hint                          -        FAILURE  tasks
  sep-2663-legacy-task-param-ignored                              -        FAILURE  tasks
  tasks-immediate-result-shortcut                                 -        FAILURE  tasks
  tasks-result-type-complete-on-non-task-responses                -        FAILURE  tasks
  sep-2663-durable-create-strong-consistency                      -        FAILURE  tasks
  sep-2663-tasks-get-invalid-task-id-32602                        -        FAILURE  tasks
  wire-schema-valid                                               -        SUCCESS  -
tasks-status-notifications
  tasks-status-notifications                                      -        SKIPPED  tasks
tasks-required-task-error
  sep-2663-server-returns-missing-capability-when-required        -        FAILURE  tasks
  wire-schema-valid                                               -        SUCCESS  -
tasks-mrtr-composition
  sep-2663-mrtr-synchronous-before-task-creation                  -        FAILURE  tasks
  wire-schema-valid                                               -        SUCCESS  -
input-required-result-basic-elicitation
  sep-2322-elicitation-incomplete                                 -        FAILURE  asks-client
  wire-schema-valid                                               -        SUCCESS  -
input-required-result-basic-sampling
  sep-2322-sampling-incomplete                                    -        FAILURE  asks-client
  wire-schema-valid                                               -        SUCCESS  -
input-required-result-basic-list-roots
  sep-2322-list-roots-incomplete                                  -        FAILURE  asks-client
  wire-schema-valid                                               -        SUCCESS  -
input-required-result-request-state
  sep-2322-request-state-incomplete                               -        FAILURE  asks-client
  wire-schema-valid                                               -        SUCCESS  -
input-required-result-multiple-input-requests
  sep-2322-multiple-inputs-incomplete                             -        FAILURE  asks-client
  wire-schema-valid                                               -        SUCCESS  -
input-required-result-multi-round
  sep-2322-multi-round-r1                                         -        FAILURE  asks-client
  wire-schema-valid                                               -        SUCCESS  -
input-required-result-missing-input-response
  sep-2322-missing-response-rerequests                            -        WARNING  asks-client
  wire-schema-valid                                               -        SUCCESS  -
input-required-result-non-tool-request
  sep-2322-non-tool-incomplete                                    -        FAILURE  asks-client
  wire-schema-valid                                               -        SUCCESS  -
input-required-result-result-type
  sep-2322-result-type-included                                   -        FAILURE  asks-client
  wire-schema-valid                                               -        SUCCESS  -
input-required-result-unsupported-methods
  sep-2322-not-on-unsupported-requests                            -        SUCCESS  vacuous
  wire-schema-valid                                               -        SUCCESS  -
input-required-result-tampered-state
  sep-2322-reject-tampered-state                                  -        FAILURE  asks-client
  wire-schema-valid                                               -        SUCCESS  -
input-required-result-capability-check
  sep-2322-respect-client-capabilities                            -        FAILURE  asks-client
  wire-schema-valid                                               -        SUCCESS  -
input-required-result-ignore-extra-params
  sep-2322-ignore-unexpected-params                               -        WARNING  asks-client
  wire-schema-valid                                               -        SUCCESS  -
input-required-result-validate-input
  sep-2322-validate-input-responses                               -        SUCCESS  vacuous
  sep-2322-error-on-protocol-error                                -        SUCCESS  vacuous
  wire-schema-valid                                               -        SUCCESS  -
"""

Table = dict[tuple[str, str], tuple[str, str | None]]


def _parse(table: str) -> dict[str, Table]:
    """CHECKS as {revision: {(scenario, check): (verdict, why or None)}}."""
    out: dict[str, Table] = {revision: {} for revision in REVISIONS}
    scenario = ""
    for line in table.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace():
            scenario = line.strip()
            continue
        check, *verdicts, why = line.split()
        assert why == "-" or why in WHY, line
        for revision, verdict in zip(REVISIONS, verdicts, strict=True):
            if verdict != "-":
                assert (verdict == "SUCCESS") or why != "-", line
                out[revision][(scenario, check)] = (verdict, None if why == "-" else WHY[why])
    return out


EXPECTED = _parse(CHECKS)

# The suite's fixture tools that the lab's own tools can stand in for, and the checks that
# then exercise the lab (all must pass).
FIXTURE_ALIASES = {
    "test_simple_text": "stream_tokens",  # a text result
    "test_error_handling": "fail",  # isError: true, with a message
    "test_tool_with_progress": "stream_tokens",  # >= 3 increasing progress notifications
    "test_reconnection": "stream_tokens",  # an SSE response: priming event, retry field
    "test_logging_tool": "stream_tokens",  # logs, but (2026-07-28) only when _meta asks
}
_AS_FIXTURES = """
tools-call-simple-text
  tools-call-simple-text                                          SUCCESS  SUCCESS  -
  wire-schema-valid                                               SUCCESS  SUCCESS  -
tools-call-error
  tools-call-error                                                SUCCESS  SUCCESS  -
  wire-schema-valid                                               SUCCESS  SUCCESS  -
tools-call-with-progress
  tools-call-with-progress                                        SUCCESS  SUCCESS  -
  wire-schema-valid                                               SUCCESS  SUCCESS  -
server-sse-polling
  server-sse-priming-event                                        SUCCESS  -        -
  server-sse-retry-field                                          SUCCESS  -        -
server-stateless
  sep-2575-server-no-log-without-loglevel                         -        SUCCESS  -
"""
UNDER_FIXTURE_NAMES = _parse(_AS_FIXTURES)


def _differences(expected: Table, results: conformance.Results, *, exhaustive: bool) -> list[str]:
    """What disagrees with ``expected``, one line each; ``exhaustive``: every check the
    suite reported must be listed."""
    problems = []
    for key, (verdict, why) in sorted(expected.items()):
        got = results.status.get(key)
        if got == verdict:
            continue
        name = "/".join(key)
        note = results.message.get(key, "")
        if got is None:
            problems.append(f"{name}: not reported (expected {verdict})")
        elif why is None:
            problems.append(f"{name}: {got}, must pass. {note}")
        else:
            problems.append(
                f"{name}: {got}, listed as {verdict} because {why}; reclassify it. {note}"
            )
    if exhaustive:
        for key in sorted(results.status.keys() - expected.keys()):
            problems.append(f"{'/'.join(key)}: {results.status[key]}, not in CHECKS")
    return problems


@pytest.fixture(scope="session")
def suite(pytestconfig: pytest.Config) -> conformance.Suite:
    cache = getattr(pytestconfig, "cache", None)
    if cache is None:
        pytest.fail(
            "the conformance suite is installed in pytest's cache: drop -p no:cacheprovider"
        )
    return conformance.install(Path(cache.mkdir("mcp-conformance")))


@pytest.mark.parametrize("revision", REVISIONS)
def test_lab_serve_passes_every_check_that_applies(
    suite: conformance.Suite, tmp_path: Path, revision: str
) -> None:
    with conformance.serve_lab(tmp_path) as url:
        results = conformance.run(suite, f"{url}/mcp", tmp_path / "results", requirements=revision)
    problems = _differences(EXPECTED[revision], results, exhaustive=True)
    assert not problems, f"conformance {suite.version} at {revision}:\n" + "\n".join(problems)


@pytest.fixture
def fixture_named_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lab's tools also under the suite's fixture names (undone after the test)."""
    for alias, tool in FIXTURE_ALIASES.items():
        monkeypatch.setitem(TOOLS, alias, dataclasses.replace(TOOLS[tool], name=alias))


@pytest.mark.parametrize("revision", REVISIONS)
@pytest.mark.usefixtures("fixture_named_tools")
def test_suite_fixture_tools_are_the_lab_tools(
    suite: conformance.Suite, tmp_path: Path, revision: str
) -> None:
    # In this process, so that the server sees the tool table with the aliases.
    with conformance.serve_in_thread(app_for(McpEndpoint())) as url:
        results = conformance.run(suite, f"{url}/mcp", tmp_path / "results", requirements=revision)
    problems = _differences(UNDER_FIXTURE_NAMES[revision], results, exhaustive=False)
    assert not problems, f"conformance {suite.version} at {revision}:\n" + "\n".join(problems)
