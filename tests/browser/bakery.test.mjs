// One cake from the shop to the customer's table, through the pages, in
// headless Chromium against the real `bakery` binary.
//
// The delivery company is a webhook listener here that fails until told
// otherwise, so the order's delivery request is dead-lettered, the operator
// sees it with its reason and redrives it, and the customer's tracking page
// (open all along) moves on by itself. Nothing sleeps: every wait is on
// something the page or the listener shows, with a deadline.
//
// Run through ./run.sh, which installs Chromium and builds the binary.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, rmSync } from "node:fs";
import * as harness from "./harness.mjs";
import { BAKER_TOKEN, WAIT, PHONE, DESKTOP, accessible, shot } from "./harness.mjs";

const work = harness.workDir();
const steps = harness.stepper();
let webhook;
let bakery;
let context;
let base;

before(async () => {
  webhook = await harness.startWebhook();
  bakery = await harness.startBakery(work, webhook.url);
  base = bakery.address;
  context = await launch("profile", { viewport: DESKTOP });
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

/** Debian's Chromium with its own fresh profile; `options` add to the defaults. */
function launch(profile, options) {
  return harness.launch(work, profile, options);
}

/** Places an order straight through the API (other customers). */
function apiOrder(name, productId, quantity) {
  return harness.apiOrder(base, name, productId, quantity);
}

/**
 * The customer's confirmation of `orderId` from the bakery's outbox (the
 * runner's default mailer), once it is there: headers and the decoded text
 * (quoted-printable, as mail programs read it).
 */
async function confirmationMail(orderId) {
  const deadline = Date.now() + WAIT.timeout;
  for (;;) {
    for (const { raw } of harness.outboxMails(work, ".confirmation")) {
      const split = raw.search(/\r?\n\r?\n/);
      const headers = raw.slice(0, split);
      const body = raw.slice(split).trimStart();
      const bytes = body
        .replace(/=\r?\n/g, "")
        .replace(/=([0-9A-F]{2})/g, (_, hex) => String.fromCharCode(parseInt(hex, 16)));
      const text = Buffer.from(bytes, "latin1").toString("utf8");
      if (text.includes(orderId)) return { headers, text };
    }
    if (Date.now() > deadline) throw new Error(`no confirmation for ${orderId} in the outbox`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * axe-core on what a page without script shows. axe itself needs script,
 * so the page's HTML is served again, at the same origin (its stylesheet
 * loads), to a page whose own script is blocked, and checked there.
 */
async function accessibleAsShown(page, state) {
  const html = await page.content();
  const checker = await context.newPage();
  await checker.setViewportSize(PHONE);
  await checker.route("**/static/bakery.js*", (route) => route.abort());
  await checker.route(`${base}/as-shown-without-script`, (route) =>
    route.fulfill({ status: 200, contentType: "text/html; charset=utf-8", body: html }));
  await checker.goto(`${base}/as-shown-without-script`);
  assert.equal(await checker.locator("main").innerText(), await page.locator("main").innerText(), "the same page");
  await accessible(checker, state);
  await checker.close();
}

/** A step of the story; once one fails, the rest are skipped, not timed out. */
function step(t, name, body) {
  return steps.step(t, name, body);
}

test("a cake goes from the shop to the customer's table", async (t) => {
  const customer = await context.newPage();
  // The tracking page's reads of the order, to see that it waits for the
  // next step (long-poll) instead of asking over and over.
  const orderReads = [];
  customer.on("request", (request) => {
    if (request.method() === "GET" && /\/order\/[0-9a-f-]{36}/.test(request.url())) {
      orderReads.push({ url: request.url(), prefer: request.headers()["prefer"] });
    }
  });
  await customer.setViewportSize(PHONE);
  let trackingLink;
  let orderId;
  // The short number people read, the same on every page.
  let orderNumber;

  await step(t, "the shop shows the cakes with prices", async () => {
    const desktop = await context.newPage();
    await desktop.goto(`${base}/`);
    await desktop.getByRole("heading", { name: "Our cakes" }).waitFor(WAIT);
    assert.ok(await desktop.locator(".product .price", { hasText: "€45.00" }).first().isVisible());
    await accessible(desktop, "the shop");
    await shot(desktop, "page-shop.png");
    await desktop.close();
  });

  await step(t, "a bad quantity is shown beside its field, then the order goes through", async () => {
    await customer.goto(`${base}/`);
    // On a phone the form is on the first screen, not below the cakes.
    const nameBox = await customer.getByLabel("Your name").boundingBox();
    assert.ok(nameBox.y + nameBox.height < PHONE.height, `the form starts at ${nameBox.y}px`);
    await customer.getByLabel("Your name").fill("Ada Lovelace");
    await customer.getByLabel("Delivery address").fill("12 Analytical Row\nLondon");
    // The cake is chosen from its card, further down: the form comes back
    // into view with that cake picked and the total beside the button.
    await customer.getByRole("link", { name: "Choose Birthday cake" }).click();
    assert.equal(await customer.getByLabel("Cake", { exact: true }).inputValue(), "5");
    const heading = await customer.locator("#order-heading").boundingBox();
    assert.ok(heading.y >= 0 && heading.y < PHONE.height, `the form is back in view (${heading.y}px)`);
    await customer.locator("#order-total", { hasText: "Total: €45.00 for 1 × Birthday cake" }).waitFor(WAIT);
    await customer.getByLabel("How many").fill("0");
    await customer.locator("#order-total", { hasText: "Choose how many" }).waitFor(WAIT);
    await customer.getByLabel("Email").fill("ada@example.com");
    assert.match(await customer.locator("#email-hint").textContent(), /confirmation with your private tracking link/);
    await customer.getByRole("button", { name: "Place order" }).click();

    await customer.locator("#quantity-error", { hasText: "Quantity must be between 1 and 50." }).waitFor(WAIT);
    await customer.locator('#quantity[aria-invalid="true"]').waitFor(WAIT);
    assert.equal(await customer.locator('#name[aria-invalid="true"]').count(), 0);
    await accessible(customer, "the shop with a field in error, on a phone");
    await shot(customer, "page-shop-phone.png");

    await customer.getByLabel("How many").fill("2");
    await customer.locator("#order-total", { hasText: "Total: €90.00 for 2 × Birthday cake" }).waitFor(WAIT);
    await customer.getByRole("button", { name: "Place order" }).click();
    // The confirmation is the order's own page, at its own address.
    await customer.waitForURL(/\/track\/[0-9a-f-]{36}\?placed=1#token=[A-Za-z0-9_-]{43}$/, WAIT);
    await customer.getByRole("heading", { name: "Thank you, your order is placed" }).waitFor(WAIT);
    await customer.locator("#placed-email", { hasText: "ada@example.com" }).waitFor(WAIT);
    await customer.locator("#track-summary", { hasText: "2 × Birthday cake, €90.00" }).waitFor(WAIT);
    orderNumber = (await customer.locator("#order-number").textContent()).trim();
    assert.match(orderNumber, /^B-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$/);
    await accessible(customer, "the order confirmation");
    await shot(customer, "page-confirmation-phone.png");
    const url = new URL(customer.url());
    orderId = url.pathname.split("/").pop();
    trackingLink = `${url.pathname}${url.hash}`;

    // A reload keeps the confirmation and the order.
    await customer.reload();
    await customer.getByRole("heading", { name: "Thank you, your order is placed" }).waitFor(WAIT);
    await customer.locator("#track-summary", { hasText: "2 × Birthday cake, €90.00" }).waitFor(WAIT);
    assert.equal((await customer.locator("#order-number").textContent()).trim(), orderNumber);
  });

  await step(t, "without script, a card picks its cake and the answer is at the top of the page", async () => {
    const plain = await launch("profile-no-script", { javaScriptEnabled: false, viewport: PHONE });
    const page = await plain.newPage();
    await page.goto(`${base}/`);
    await page.getByRole("link", { name: "Choose Carrot cake" }).click();
    await page.waitForURL(/\/\?product=\d+#order-heading$/, WAIT);
    assert.equal(
      await page.getByLabel("Cake", { exact: true }).evaluate((select) => select.selectedOptions[0].textContent),
      "Carrot cake (€28.00)",
    );
    await page.getByLabel("Your name").fill("Edsger Dijkstra");
    await page.getByLabel("Delivery address").fill("1 Shortest Path");
    await page.getByLabel("How many").fill("0");
    await page.getByRole("button", { name: "Place order" }).click();
    const error = page.locator("#quantity-error", { hasText: "Quantity must be between 1 and 50." });
    await error.waitFor(WAIT);
    assert.ok((await error.boundingBox()).y < PHONE.height, "the error is on the first screen");
    await accessibleAsShown(page, "the shop with a field in error, without script");
    await page.getByLabel("How many").fill("1");
    await page.getByRole("button", { name: "Place order" }).click();
    const thanks = page.getByRole("heading", { name: "Thank you, your order is placed" });
    await thanks.waitFor(WAIT);
    assert.ok((await thanks.boundingBox()).y < PHONE.height, "the confirmation is on the first screen");
    assert.ok((await page.textContent(".confirmation")).includes("1 × Carrot cake"));
    await accessibleAsShown(page, "the order confirmation, without script");
    await plain.close();
  });

  await step(t, "the confirmation email's link opens the order and its first steps", async () => {
    const mail = await confirmationMail(orderId);
    assert.match(mail.headers, /^To: ada@example\.com$/m);
    assert.match(mail.headers, new RegExp(`^Subject: Your order ${orderNumber}:`, "m"));
    assert.match(mail.text, /2 × Birthday cake/);
    assert.match(mail.text, /Total: +€90\.00/);
    const link = mail.text.match(/https?:\/\/\S+\/track\/\S+/)[0];
    assert.equal(new URL(link).pathname + new URL(link).hash, trackingLink, "the link the shop opened");

    // Opened in a new tab, as from a mail program.
    const fromMail = await context.newPage();
    await fromMail.setViewportSize(PHONE);
    await fromMail.goto(link);
    await fromMail.locator("#track-status", { hasText: "waiting for the oven" }).waitFor(WAIT);
    assert.equal(await fromMail.getByRole("heading", { name: "Thank you, your order is placed" }).count(), 0);
    await fromMail.close();

    await customer.locator("#track-status", { hasText: "waiting for the oven" }).waitFor(WAIT);
    await customer.locator("#step-placed.done").waitFor(WAIT);
    await customer.locator("#step-baker_notified.done").waitFor(WAIT);
    // Where it goes, in the customer's own lines.
    assert.equal(await customer.locator("#track-address").textContent(), "12 Analytical Row\nLondon");
    await accessible(customer, "the tracking page of a placed order");
  });

  // The cake maker's tab; the operator's page opens in it later, so the
  // token typed once (kept in sessionStorage) serves both.
  const staff = await context.newPage();

  await step(t, "the cake maker signs in and fulfils the order with one click", async () => {
    await apiOrder("Grace Hopper", 1, 1);
    await apiOrder("Alan Turing", 5, 1);
    await staff.goto(`${base}/baker`);
    await staff.getByLabel("Baker token").fill("not-the-token-at-all");
    await staff.getByRole("button", { name: "Sign in" }).click();
    await staff.getByText("That token was not accepted").waitFor(WAIT);
    await accessible(staff, "the cake maker's sign-in with a refused token");
    await staff.getByLabel("Baker token").fill(BAKER_TOKEN);
    await staff.getByRole("button", { name: "Sign in" }).click();

    const fulfil = staff.getByRole("button", { name: "Mark fulfilled: 2 × Birthday cake for Ada Lovelace" });
    await fulfil.waitFor(WAIT);
    // Oldest first: Ada's order comes before the two placed after it.
    const firstOrder = await staff.locator("#orders li").first().textContent();
    assert.match(firstOrder, /Ada Lovelace/);
    assert.ok(firstOrder.includes(orderNumber), firstOrder);
    await staff.locator("#totals li", { hasText: "Birthday cake" }).getByText("3").waitFor(WAIT);
    await accessible(staff, "the cake maker's page");
    await shot(staff, "page-baker.png");

    await fulfil.click();
    await staff.locator("#work-status", { hasText: "Marked fulfilled: 2 × Birthday cake for Ada Lovelace" }).waitFor(WAIT);
    await fulfil.waitFor({ state: "detached", ...WAIT });
  });

  await step(t, "the failing delivery company's request is dead-lettered with its reason", async () => {
    await staff.goto(`${base}/operator`);
    const row = staff.locator("#dead-letters tr", { hasText: "delivery" });
    await row.waitFor(WAIT);
    assert.match(await row.locator(".reason").textContent(), /500/);
    assert.ok((await row.textContent()).includes(orderNumber), await row.textContent());
    await staff.locator("#recent-errors li", { hasText: "dead letter" }).first().waitFor(WAIT);
    assert.ok(webhook.received.length >= 2, "tried twice before giving up");
    await accessible(staff, "the operator's page with a dead letter");
    await shot(staff, "page-operator.png");
  });

  await step(t, "tracking tells the truth while the delivery company has not been told", async () => {
    // The order is out for delivery in the bakery's books, but the
    // delivery company never heard of it: the customer is not told it is
    // on its way, nor asked whether it arrived.
    await customer.locator("#track-status", { hasText: "handing it to the delivery company" }).waitFor(WAIT);
    assert.equal(await customer.locator("#step-delivery_notified.done").count(), 0);
    assert.equal(await customer.getByText(/on its way\./i).count(), 0);
    assert.equal(await customer.getByRole("button", { name: "I received my cake" }).count(), 0);
    await accessible(customer, "the tracking page while the delivery request is dead-lettered");
  });

  await step(t, "the operator redrives it once the delivery company is back", async () => {
    webhook.failing = false;
    await staff.getByRole("button", { name: /^Redrive dead letter \d+ from delivery$/ }).click();
    await staff.locator("#work-status", { hasText: "redriven" }).waitFor(WAIT);
    await staff.locator("#dead-empty").waitFor({ state: "visible", ...WAIT });
  });

  await step(t, "the open tracking page moves on by itself; the customer confirms with a review", async () => {
    await customer.locator("#step-delivery_notified.done").waitFor(WAIT);
    const waiting = orderReads.filter((read) => read.url.includes("waitFor=delivery_notified"));
    assert.ok(waiting.length >= 1, "the page waits for the next step: " + JSON.stringify(orderReads));
    assert.equal(waiting[0].prefer, "wait=25");
    const delivered = webhook.received.filter((call) => !call.failing);
    assert.equal(delivered.length, 1);
    assert.ok(delivered[0].headers["webhook-signature"], "partner calls are signed");
    assert.equal(JSON.parse(delivered[0].body).orderId ?? JSON.parse(delivered[0].body).data?.orderId, orderId);

    await customer.getByRole("button", { name: "I received my cake" }).waitFor(WAIT);
    await customer.locator("#track-status", { hasText: "On its way" }).waitFor(WAIT);
    await accessible(customer, "the tracking page of a cake on its way");
    await shot(customer, "page-track.png");
    await customer.getByLabel("Your review").fill("Still warm, and the sprinkles survived the trip. Thank you!");
    await customer.getByRole("button", { name: "I received my cake" }).click();
    await customer.locator("#step-delivered.done").waitFor(WAIT);
    await customer.locator("#track-status", { hasText: "Delivered" }).waitFor(WAIT);
    await customer.locator("#review-shown", { hasText: "sprinkles survived" }).waitFor(WAIT);
    await customer.getByRole("button", { name: "I received my cake" }).waitFor({ state: "hidden", ...WAIT });
    await accessible(customer, "the tracking page of a delivered order");
    await shot(customer, "page-track-delivered.png");
  });

  await step(t, "a tracking page that cannot reach the bakery says its live updates stopped", async () => {
    const offline = await context.newPage();
    await offline.setViewportSize(PHONE);
    await offline.route(/\/order\/[0-9a-f-]{36}/, (route) => route.abort("internetdisconnected"));
    await offline.goto(`${base}${trackingLink}`);
    await offline.locator("#live-note", { hasText: "Live updates have stopped" }).waitFor(WAIT);
    await accessible(offline, "the tracking page with its live updates stopped");
    // Back online: the note goes and the order shows.
    await offline.unroute(/\/order\/[0-9a-f-]{36}/);
    await offline.locator("#track-status", { hasText: "Delivered" }).waitFor(WAIT);
    await offline.locator("#live-note").waitFor({ state: "hidden", ...WAIT });
    await offline.close();
  });
});
