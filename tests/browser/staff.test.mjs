// The cake maker's and the operator's pages as people use them, in
// headless Chromium against the real `bakery` binary: 200 waiting orders,
// another cake maker fulfilling orders while the page is open, undo,
// keyboard focus, new orders arriving, and the operator on a phone
// redriving a dead letter. Nothing sleeps: every wait is on something the
// page, the API or the listener shows, with a deadline.
//
// Run through ./run.sh, which installs Chromium and builds the binary.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, rmSync } from "node:fs";
import * as harness from "./harness.mjs";
import { BAKER_TOKEN, WAIT, PHONE, DESKTOP, accessible, shot } from "./harness.mjs";

const work = harness.workDir();
const steps = harness.stepper();
// The undo window, shortened for the test through the page's query.
const UNDO_MS = 2000;
let webhook;
let bakery;
let context;
let base;

before(async () => {
  webhook = await harness.startWebhook();
  bakery = await harness.startBakery(work, webhook.url);
  base = bakery.address;
  context = await harness.launch(work, "profile", { viewport: DESKTOP });
});

after(async () => {
  await context?.close();
  await harness.stopBakery(bakery);
  await webhook?.close();
  if (steps.failed && bakery?.log) {
    console.error("---- bakery log ----\n" + readFileSync(bakery.log, "utf8").slice(-8000));
  }
  rmSync(work, { recursive: true, force: true });
});

/** The bakery's API as the cake maker: `{ status, body }`. */
async function asBaker(method, path, body) {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${BAKER_TOKEN}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

/** Whether the order was fulfilled (it may have moved on since). */
async function wasFulfilled(orderId) {
  const answer = await asBaker("GET", `/order/${orderId}`);
  assert.equal(answer.status, 200);
  return answer.body.timeline.some((step) => step.step === "fulfilled");
}

/** The order ids of the rows, top to bottom. */
function rowIds(page) {
  return page.locator("#orders li[data-order-id]").evaluateAll((items) => items.map((li) => li.dataset.orderId));
}

/** The top of each of the first `n` rows, in CSS pixels from the page's top. */
function rowTops(page, n) {
  return page.locator("#orders li[data-order-id]").evaluateAll(
    (items, n) => items.slice(0, n).map((li) => Math.round(li.getBoundingClientRect().top + window.scrollY)),
    n,
  );
}

const row = (page, orderId) => page.locator(`#orders li[data-order-id="${orderId}"]`);

/** Waits until the focused element is the "Mark fulfilled" button of `orderId`'s row. */
async function focusIsOn(page, orderId) {
  await page.waitForFunction(
    (id) => {
      const focused = document.activeElement;
      return focused?.tagName === "BUTTON" && focused.textContent === "Mark fulfilled" &&
        focused.closest("li")?.dataset.orderId === id;
    },
    orderId,
    WAIT,
  );
}

test("the cake maker's and the operator's pages with many orders and many hands", async (t) => {
  const step = (name, body) => steps.step(t, name, body);
  const page = await context.newPage();
  // Every fulfilment the page sends, by order id.
  const sent = [];
  page.on("request", (request) => {
    if (request.method() === "POST" && request.url().endsWith("/order/fulfilled")) {
      sent.push(JSON.parse(request.postData()).orderId);
    }
  });
  let ids;

  await step("200 waiting orders are counted, shown 25 at a time, and more are appended below", async () => {
    for (let i = 0; i < 200; i += 20) {
      await Promise.all(Array.from({ length: 20 }, (_, j) => {
        const n = i + j + 1;
        return harness.apiOrder(base, `Customer ${String(n).padStart(3, "0")}`, (n % 5) + 1, (n % 3) + 1);
      }));
    }
    await page.goto(`${base}/baker?undoMs=${UNDO_MS}`);
    await page.getByLabel("Baker token").fill(BAKER_TOKEN);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.locator("#waiting-count", { hasText: "200 orders waiting" }).waitFor(WAIT);
    assert.equal(await page.locator("#work").getAttribute("data-undo-ms"), String(UNDO_MS));
    ids = await rowIds(page);
    assert.equal(ids.length, 25, "the first 25 rows");
    // When each was placed: today, so the time alone.
    assert.match(await row(page, ids[0]).locator(".meta time").textContent(), /^\d{2}:\d{2}$/);
    assert.ok(await row(page, ids[0]).locator(".meta time").getAttribute("datetime"));
    // The totals say what they cover.
    await page.getByRole("heading", { name: "Cakes to bake" }).waitFor(WAIT);
    await page.locator("#totals-hint", { hasText: "over all 200 waiting orders" }).waitFor(WAIT);
    await page.locator("#shown-count", { hasText: "Showing the oldest 25; 175 more below." }).waitFor(WAIT);
    const height = await page.evaluate(() => document.documentElement.scrollHeight);
    assert.ok(height < 4000, `the page is ${height}px tall with 200 orders waiting`);
    await accessible(page, "the cake maker's page with 200 waiting orders");

    const before = await rowTops(page, 25);
    await page.getByRole("button", { name: "Show 25 more" }).click();
    await page.locator("#shown-count", { hasText: "Showing the oldest 50; 150 more below." }).waitFor(WAIT);
    ids = await rowIds(page);
    assert.equal(ids.length, 50);
    assert.deepEqual(await rowTops(page, 25), before, "appending moved no row above");
    // The keyboard goes on where the new rows start.
    await focusIsOn(page, ids[25]);
  });

  const target = () => ids[10];

  await step("rows fulfilled by another cake maker are marked in place; the row under the pointer is the one fulfilled", async () => {
    const button = row(page, target()).getByRole("button", { name: /^Mark fulfilled:/ });
    await button.scrollIntoViewIfNeeded();
    const box = await button.boundingBox();
    const tops = await rowTops(page, 20);
    // Another cake maker fulfils the five oldest orders, above the pointer.
    for (const orderId of ids.slice(0, 5)) {
      assert.equal((await asBaker("POST", "/order/fulfilled", { orderId })).status, 200);
    }
    for (const orderId of ids.slice(0, 5)) {
      await row(page, orderId).locator(".row-note", { hasText: "Fulfilled elsewhere" }).waitFor(WAIT);
      assert.equal(await row(page, orderId).getByRole("button").count(), 0);
    }
    await page.locator("#waiting-count", { hasText: "195 orders waiting" }).waitFor(WAIT);
    assert.deepEqual(await rowTops(page, 20), tops, "no row moved");
    await accessible(page, "the cake maker's page with orders fulfilled elsewhere");

    // The cake maker clicks where the button was: the same order.
    await page.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
    await row(page, target()).locator(".row-note", { hasText: /^Marking fulfilled in \d s —$/ }).waitFor(WAIT);
    assert.equal(await page.locator('#orders li[data-state="pending"]').count(), 1);
    await accessible(page, "the cake maker's page with a fulfilment waiting out its undo window");
    await row(page, target()).locator(".row-note", { hasText: "Marked fulfilled" }).waitFor(WAIT);
    await page.locator("#work-status", { hasText: "Marked fulfilled: " }).waitFor(WAIT);
    assert.deepEqual(sent, [target()], "one fulfilment sent, for the clicked row");
    assert.ok(await wasFulfilled(target()));
    const waiting = new Set((await asBaker("GET", "/baker/orders")).body.waiting.map((o) => o.orderId));
    assert.ok(!waiting.has(target()));
    for (const orderId of ids.slice(5, 10).concat(ids.slice(11, 20))) {
      assert.ok(waiting.has(orderId), "its neighbours still wait");
    }
    // Focus moved on from the clicked row to the next one.
    await focusIsOn(page, ids[11]);
  });

  await step("undo: nothing is sent, the order still waits; the keyboard moves on to the next row", async () => {
    const undone = ids[12];
    const next = ids[13];
    await row(page, undone).getByRole("button", { name: /^Mark fulfilled:/ }).focus();
    await page.keyboard.press("Enter");
    await row(page, undone).locator(".row-note", { hasText: /^Marking fulfilled in \d s —$/ }).waitFor(WAIT);
    assert.match(await page.evaluate(() => document.activeElement.getAttribute("aria-label")), /^Undo marking fulfilled: /);
    await shot(page, "page-baker-undo.png", { fullPage: false });
    await page.keyboard.press("Enter");
    await focusIsOn(page, undone);
    assert.equal(await row(page, undone).getAttribute("data-state"), "waiting");

    // The next row's window starts after the undone one's would have, so
    // once it is sent the undone one's is over too.
    await page.keyboard.press("Tab");
    await focusIsOn(page, next);
    await page.keyboard.press("Enter");
    await row(page, next).locator(".row-note", { hasText: "Marked fulfilled" }).waitFor(WAIT);
    assert.deepEqual(sent, [target(), next], "nothing sent for the undone order");
    assert.ok(!(await wasFulfilled(undone)), "the undone order still waits");
    assert.ok(await wasFulfilled(next));
    assert.equal(await row(page, undone).getAttribute("data-state"), "waiting");
    // Focus is on the row after it, not back at the top.
    await focusIsOn(page, ids[14]);
  });

  await step("new orders are announced, not jumped in; the list is rebuilt when the cake maker asks", async () => {
    await page.evaluate(() => window.scrollTo(0, 0));
    const tops = await rowTops(page, 20);
    for (const name of ["Late Lou", "Late Lea", "Late Lin"]) await harness.apiOrder(base, name, 2, 1);
    await page.locator("#new-orders", { hasText: "3 new orders —" }).waitFor(WAIT);
    const show = page.getByRole("button", { name: "Show them" });
    await show.waitFor(WAIT);
    assert.equal(await page.locator("#orders li", { hasText: "Late L" }).count(), 0, "not in the list yet");
    assert.deepEqual(await rowTops(page, 20), tops, "no row moved");
    await page.locator("#waiting-count", { hasText: "196 orders waiting" }).waitFor(WAIT);
    await accessible(page, "the cake maker's page announcing new orders");
    await shot(page, "page-baker-200.png", { fullPage: false });

    await show.click();
    // Rebuilt: what is done is gone, the oldest 50 waiting are shown, and
    // the new ones, the newest, come after them.
    await page.locator("#new-orders", { hasText: "List updated" }).waitFor(WAIT);
    const rebuilt = await rowIds(page);
    assert.equal(rebuilt.length, 50);
    const waiting = (await asBaker("GET", "/baker/orders")).body.waiting.map((o) => o.orderId);
    assert.deepEqual(rebuilt, waiting.slice(0, 50));
    assert.equal(await page.locator('#orders li[data-state="elsewhere"], #orders li[data-state="done"]').count(), 0);
    assert.equal(await page.evaluate(() => document.activeElement.id), "orders-heading");
    await accessible(page, "the cake maker's page after the list was rebuilt");
  });

  await step("the cake maker's list fits a phone", async () => {
    await page.setViewportSize(PHONE);
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= PHONE.width, `the page is ${width}px wide`);
    const button = page.locator('#orders li[data-state="waiting"]').first().getByRole("button", { name: /^Mark fulfilled:/ });
    const box = await button.boundingBox();
    assert.ok(box.x >= 0 && box.x + box.width <= PHONE.width, `Mark fulfilled at ${box.x}..${box.x + box.width}px`);
    await accessible(page, "the cake maker's page on a phone");
  });

  await step("the operator on a phone sees the dead letters without scrolling sideways, and redrives one", async () => {
    // The fulfilled orders' delivery requests failed at the delivery
    // company and were dead-lettered. Same tab: the token is kept.
    await page.setViewportSize(PHONE);
    await page.goto(`${base}/operator`);
    const letters = page.locator("#dead-letters tr", { hasText: "delivery" });
    await page.waitForFunction(() => document.querySelectorAll("#dead-letters tr").length === 7, null, WAIT);
    assert.equal(await letters.count(), 7, "one for each fulfilled order");
    const fits = await page.evaluate(() => ({
      scrollWidth: document.documentElement.scrollWidth,
      innerWidth: window.innerWidth,
    }));
    assert.ok(fits.scrollWidth <= fits.innerWidth, `the page is ${fits.scrollWidth}px wide in ${fits.innerWidth}px`);
    const redrive = page.getByRole("button", { name: /^Redrive dead letter \d+ from delivery$/ }).first();
    const box = await redrive.boundingBox();
    assert.ok(box.x >= 0 && box.x + box.width <= PHONE.width, `Redrive at ${box.x}..${box.x + box.width}px`);
    // The bakery's tries and the partner's calls are named apart.
    const first = letters.first();
    assert.match(await first.locator(".c-tries").innerText(), /^Tries by the bakery\s*2$/);
    assert.match(await first.locator(".reason").innerText(), /HTTP 500|500/);
    assert.doesNotMatch(await first.locator(".reason").innerText(), /tries/);
    await accessible(page, "the operator's page on a phone");
    await shot(page, "page-operator-phone.png");

    const count = await letters.count();
    const errorsBefore = await page.locator("#recent-errors li").count();
    assert.ok(errorsBefore >= count, "every dead letter is a recent error");
    webhook.failing = false;
    await redrive.click();
    await page.locator("#work-status", { hasText: "redriven" }).waitFor(WAIT);
    await page.waitForFunction((n) => document.querySelectorAll("#dead-letters tr").length === n - 1, count, WAIT);
    // The redriven letter's failure stays listed, tagged so.
    await page.locator("#recent-errors li .tag.redriven", { hasText: /^redriven \d{2}:\d{2}$/ }).first().waitFor(WAIT);
    assert.ok(await page.locator("#errors-empty").isHidden());
    await page.waitForFunction((n) => document.querySelectorAll("#recent-errors li").length === n, errorsBefore, WAIT);
    await accessible(page, "the operator's page after a redrive, on a phone");
  });

  await step("leaving while a fulfilment waits out its undo window asks first; staying sends it", async () => {
    await page.setViewportSize(DESKTOP);
    await page.goto(`${base}/baker?undoMs=${UNDO_MS}`);
    const button = page.locator('#orders li[data-state="waiting"]').first().getByRole("button", { name: /^Mark fulfilled:/ });
    await button.waitFor(WAIT);
    const orderId = await page.locator('#orders li[data-state="waiting"]').first().getAttribute("data-order-id");
    await button.click();
    await row(page, orderId).locator(".row-note", { hasText: /^Marking fulfilled in \d s —$/ }).waitFor(WAIT);
    const asked = new Promise((resolve) => {
      page.once("dialog", async (dialog) => {
        resolve(dialog.type());
        await dialog.dismiss();
      });
    });
    await page.close({ runBeforeUnload: true });
    assert.equal(await asked, "beforeunload", "the browser asked before leaving");
    assert.ok(!page.isClosed(), "the cake maker chose to stay");
    await row(page, orderId).locator(".row-note", { hasText: "Marked fulfilled" }).waitFor(WAIT);
    assert.ok(await wasFulfilled(orderId));
  });
});
