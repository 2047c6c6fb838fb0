"""Helpers shared by the tests: plain modules, imported by name (fixtures live in conftest.py).

Starting things -- each on a free loopback port, in a temporary directory, stopped by its PID, so
tests in different xdist workers never meet:

- :mod:`.servers` -- ``serve(app)``: an ASGI app under uvicorn in a thread; ``health(url)``.
- :mod:`.serve_process` -- ``getgpt_serve(*flags)``: every test that starts ``getgpt serve`` goes
  through it; ``run_getgpt(*args)`` for a command that ends by itself. Both fork the command from
  the worker's :mod:`.forkserver` (a process that has imported it once) unless told ``fresh``.
- :mod:`.processes` -- ``process(command, ready_url)``: any other program (the LiteLLM proxy);
  ``SSL_CONTEXT``, which every httpx call and client of the tests is given (``verify=``):
  httpx builds one for each otherwise, reading the CA bundle (~27 ms of CPU, even for http://);
  :mod:`.sdk` -- the openai SDK's clients (``openai_sdk(base_url)``) made on that one context.
- :mod:`.services` -- ``Redis()``, ``Nginx(backends)``, ``Postgres()`` (``create_database()``);
  :mod:`.cluster` -- replicas behind nginx; :mod:`.keystore` -- keys and the ledger of a ``--db``.
- fakes: :mod:`.scripted` (a GetGpt server), :mod:`.openai_upstream` (an OpenAI-compatible one),
  :mod:`.faults` and :mod:`.hostile_upstreams` (upstreams that misbehave), :mod:`.proxy`,
  :mod:`.conformance`; :mod:`.loopback` is the raw server under the hand-written ones.

Waiting -- never a sleep to let something happen:

- :mod:`.waiting` -- ``wait_until(condition, limit)``, ``wait_until_async``: the one poll.
- :mod:`.sockets` -- what the kernel knows: bytes a server has read, connections it accepted, a
  socket it released, sends queued behind a full buffer.
- an injected clock where the code takes one; a log line (``ServeProcess.wait_for_output``).

Driving: :mod:`.hostile` (hostile clients), :mod:`.browser` (the page in Chromium, on the browser's
own thread), :mod:`.terminal` (the CLI on a pseudo-terminal), :mod:`.command` (``getgpt`` run to
its end, forked too), :mod:`.client_probe` (one request in a process of its own, forked, measured). Measuring:
:mod:`.memory` (a process's resident growth), :mod:`.visual` (the page's screenshots against
reviewed baselines).
"""
