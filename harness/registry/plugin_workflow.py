"""The GitHub workflow ``bench new-plugin`` writes into a plugin package: on every pull request,
``bench ab`` measures the package's models at the pull request's base commit against the pull
request, and fails the check on a regression.

It needs nothing of the repository but the package itself: bench is installed by its name on the
package index, with the CPU build of torch, and the base commit's package is installed by
``bench ab --baseline git:SHA`` itself (:mod:`harness.comparing.ab.revisions`). A
:class:`string.Template` filled by :meth:`harness.registry.skeleton.PluginNames.fill`: ``$$`` is a
literal ``$`` of the shell or of a GitHub expression.
"""

WORKFLOW = """\
# Performance regression check of $project, written by `bench new-plugin`: on every pull
# request, `bench ab` measures this package's models at the pull request's base commit (which it
# installs from git itself: --baseline git:BASE_SHA) against the pull request (installed here:
# --candidate current) in alternating rounds on the same runner, both sides pinned to the same
# CPU, so that a runner that changes speed part-way slows both alike.
# Exit codes, and so the check: 0 no regression, 1 a regression, 2 a usage error (e.g. a model
# the base commit does not have yet), 3 a failed run or no trustworthy verdict (the runner was
# too busy: re-run the job). Timings are judged by their rounds, each step's counters
# (operators, allocations, syncs...) exactly. bench ab writes the verdict to the job summary and
# each regression as an annotation with the command that shows it again; the verdict also goes
# to a pull-request comment updated in place (not for forks, whose token cannot comment); the
# results are the `bench-results` artifact.
#
# To adapt: BENCH_AB_ARGS (a --model for each model of yours, their dataset, batch sizes, modes;
# thresholds such as --threshold 3%), ROUNDS (more rounds catch smaller changes).
name: bench

on:
  pull_request:

permissions:
  contents: read
  pull-requests: write

concurrency:
  group: bench-$${{ github.event.pull_request.number }}
  cancel-in-progress: true

env:
  # bench itself: its name on the package index, or a pinned form of it that pip takes
  # (bench-harness==VERSION, or bench-harness @ git+https://...@COMMIT)
  BENCH_PACKAGE: bench-harness
  # what bench ab measures and judges (split into words by the shell)
  BENCH_AB_ARGS: --model $model --dataset $dataset --batch-size 1 --batch-size 32
  ROUNDS: "20"
  RESULTS: $${{ github.workspace }}/bench-results

jobs:
  bench:
    runs-on: ubuntu-latest
    timeout-minutes: 60
    steps:
      - uses: actions/checkout@v4
        with:
          fetch-depth: 0  # bench ab reads the base commit from git

      - uses: actions/setup-python@v5
        with:
          python-version: "3.11"

      # setuptools: bench ab builds the base commit's package without build isolation, so the
      # build backend of pyproject.toml must be installed here.
      - name: Install the CPU build of torch, bench and this package
        id: install
        run: |
          python -m pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu
          python -m pip install "$$BENCH_PACKAGE" "setuptools>=64"
          python -m pip install .

      - name: The base commit against this pull request, interleaved
        id: ab
        env:
          BASE_SHA: $${{ github.event.pull_request.base.sha }}
        run: |
          set +e
          bench ab --baseline "git:$$BASE_SHA" --candidate current $$BENCH_AB_ARGS \\
            --threads 1 --rounds "$$ROUNDS" --quiet --out "$$RESULTS" \\
            --markdown-out "$$RESULTS/summary.md"
          code=$$?
          echo "exit_code=$$code" >> "$$GITHUB_OUTPUT"
          exit 0

      - name: Upload the results
        if: always()
        uses: actions/upload-artifact@v4
        with:
          name: bench-results
          path: bench-results/

      - name: Comment on the pull request
        if: >
          always() && github.event.pull_request.head.repo.full_name == github.repository &&
          hashFiles('bench-results/summary.md') != ''
        env:
          GH_TOKEN: $${{ github.token }}
        run: >
          gh pr comment "$${{ github.event.pull_request.number }}" --repo "$$GITHUB_REPOSITORY"
          --body-file "$$RESULTS/summary.md" --edit-last --create-if-none

      - name: Verdict
        run: exit "$${{ steps.ab.outputs.exit_code }}"
"""
