import { test } from "node:test";
import assert from "node:assert/strict";
import { ManualClock } from "../../src/clock.js";
import { RiskScorer } from "../../src/gateway/risk.js";

/** 12:00 UTC, inside working hours, so no off-hours points. */
const noonMs = Date.UTC(2026, 11, 5, 12, 0, 0);

test("preview matches score without counting", () => {
  const counted = new RiskScorer(new ManualClock(noonMs));
  const previewed = new RiskScorer(new ManualClock(noonMs));
  for (let request = 0; request < 70; request++) {
    const expected = counted.score("task-1", "gh");
    assert.equal(previewed.preview("task-1", "gh"), expected);
    assert.equal(previewed.preview("task-1", "gh"), expected, "a second preview counted the first");
    previewed.count("task-1", "gh");
  }
});

test("first tool use scores until counted", () => {
  const scorer = new RiskScorer(new ManualClock(noonMs));
  assert.equal(scorer.preview("task-1", "gh"), 10);
  assert.equal(scorer.preview("task-1", "gh"), 10);
  scorer.count("task-1", "gh");
  assert.equal(scorer.preview("task-1", "gh"), 0);
});
