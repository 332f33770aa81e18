// The bakery's one script. Each page says which it is in <body data-page>.
// Everything shown is set with textContent, never parsed as HTML.
"use strict";

(function () {
  const $ = (selector) => document.querySelector(selector);

  /** An element with attributes and children (strings become text). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child !== null && child !== undefined) {
        node.append(typeof child === "string" ? document.createTextNode(child) : child);
      }
    }
    return node;
  }

  /** Calls the JSON API; answers {status, ok, data, waited} (data: parsed
   *  body or null; waited: the server held the answer for a `waitFor`,
   *  `Preference-Applied: wait=<s>` with s > 0). */
  async function api(method, url, options) {
    const { token, body, headers } = options || {};
    const sent = Object.assign({ Accept: "application/json" }, headers);
    if (token) sent.Authorization = "Bearer " + token;
    if (body !== undefined) sent["Content-Type"] = "application/json";
    const response = await fetch(url, {
      method,
      headers: sent,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    const applied = response.headers.get("Preference-Applied") || "";
    const waited = /^wait=\d+$/.test(applied) && applied !== "wait=0";
    return { status: response.status, ok: response.ok, data, waited };
  }

  function money(minor, currency) {
    try {
      const format = new Intl.NumberFormat("en", { style: "currency", currency });
      const digits = format.resolvedOptions().maximumFractionDigits;
      return format.format(minor / Math.pow(10, digits));
    } catch (_) {
      return (minor / 100).toFixed(2) + " " + currency;
    }
  }

  function when(iso) {
    const date = new Date(iso);
    return date.toLocaleString([], { dateStyle: "medium", timeStyle: "medium" });
  }

  function clock(iso) {
    return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function randomKey() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return "shop-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  /**
   * The order's number for people, as the bakery computes it everywhere
   * (`OrderId::number` in the domain crate): `B-` and the id's last 40
   * bits in Crockford's base32, as `B-Y9X9-3D66`.
   */
  function orderNumber(orderId) {
    const hex = String(orderId).replace(/-/g, "").slice(-10);
    const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let chars = "";
    // Two 20-bit halves, four characters each: plain numbers stay exact.
    for (const half of [hex.slice(0, 5), hex.slice(5)]) {
      const bits = parseInt(half, 16);
      for (let i = 3; i >= 0; i--) chars += alphabet[(bits >> (5 * i)) & 31];
    }
    return "B-" + chars.slice(0, 4) + "-" + chars.slice(4);
  }

  /**
   * Shows a problem+json answer: each `errors` entry beside its field (by
   * the field's JSON name, which is also the input's id), the rest in the
   * form's problem box. Focuses the first field in error.
   */
  function showProblem(fields, problemBox, problem, fallback) {
    const others = [];
    let first = null;
    for (const field of fields) {
      const input = document.getElementById(field);
      const error = document.getElementById(field + "-error");
      if (input) input.removeAttribute("aria-invalid");
      if (error) error.textContent = "";
    }
    const errors = problem && Array.isArray(problem.errors) ? problem.errors : [];
    for (const item of errors) {
      const input = document.getElementById(item.field);
      const error = document.getElementById(item.field + "-error");
      if (fields.includes(item.field) && input && error) {
        error.textContent = (error.dataset.label || item.field) + " " + item.message + ".";
        input.setAttribute("aria-invalid", "true");
        first = first || input;
      } else {
        others.push(item.message);
      }
    }
    if (!errors.length && problem) others.push(problem.detail || problem.title || fallback);
    if (!problem && fallback) others.push(fallback);
    problemBox.textContent = others.join(" ");
    if (first) first.focus();
  }

  // ------------------------------------------------------------ shop

  function shop() {
    const form = $("#order-form");
    if (!form) return; // the confirmation page of a post without script
    const fields = ["name", "address", "productId", "quantity", "email"];
    const problemBox = $("#form-problem");
    const keyInput = form.querySelector('input[name="idempotencyKey"]');
    const button = $("#place-order");
    const product = $("#productId");
    const quantityInput = $("#quantity");
    const total = $("#order-total");

    /** "2 × Carrot cake: €56.00", before the order is placed. */
    function showTotal() {
      const option = product.selectedOptions[0];
      const count = Number(quantityInput.value.trim());
      if (!option || !Number.isInteger(count) || count < 1) {
        total.textContent = "Choose how many to see the total.";
      } else {
        const each = Number(option.dataset.priceCents);
        const name = option.textContent.replace(/\s*\([^)]*\)\s*$/, "");
        total.textContent = "Total: " + money(each * count, form.dataset.currency) + " for " + count + " × " + name;
      }
      total.hidden = false;
    }
    product.addEventListener("change", showTotal);
    quantityInput.addEventListener("input", showTotal);
    showTotal();

    // A product card's "Choose" picks that cake in the form (the link
    // does the same without script, through the server).
    for (const choose of document.querySelectorAll(".choose")) {
      choose.addEventListener("click", (event) => {
        event.preventDefault();
        product.value = choose.dataset.productId;
        showTotal();
        $("#order-heading").scrollIntoView({ block: "start" });
        quantityInput.focus({ preventScroll: true });
      });
    }

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const quantity = quantityInput.value.trim();
      const body = {
        name: $("#name").value,
        address: $("#address").value,
        productId: product.value,
        quantity: /^\d+$/.test(quantity) ? Number(quantity) : quantity === "" ? null : quantity,
      };
      const email = $("#email").value.trim();
      if (email) body.email = email;

      button.disabled = true;
      button.textContent = "Placing your order…";
      try {
        const answer = await api("POST", "/order", {
          body,
          headers: { "Idempotency-Key": keyInput.value },
        });
        if (answer.status === 201 && answer.data) {
          showProblem(fields, problemBox, null, "");
          // The order's own page is its confirmation: an address that
          // survives a reload and can be bookmarked.
          location.assign("/track/" + encodeURIComponent(answer.data.orderId) + "?placed=1#token=" +
            encodeURIComponent(answer.data.customerToken));
          return;
        }
        const type = (answer.data && answer.data.type) || "";
        if (type.endsWith("/idempotency-key-reused")) keyInput.value = randomKey();
        showProblem(fields, problemBox, answer.data, "The order could not be placed; please try again.");
      } catch (_) {
        problemBox.textContent = "We could not reach the bakery. Check your connection and try again.";
      }
      button.disabled = false;
      button.textContent = "Place order";
    });
  }

  // ------------------------------------------------------------ tracking

  /**
   * What the customer is told, from the order's timeline: "on its way"
   * only once the delivery company has been told, whatever the status.
   */
  function customerStatus(order, reached) {
    if (order.status === "delivered") return "Delivered. Enjoy your cake!";
    if (reached.has("delivery_notified")) return "On its way. The delivery company has your cake.";
    if (reached.has("fulfilled")) return "Baked! We are handing it to the delivery company.";
    if (reached.has("baker_notified")) return "Baking. The cake maker has your order; your cake is waiting for the oven.";
    return "Placed. We are telling the cake maker.";
  }

  function track() {
    const root = $(".track");
    const orderId = root.dataset.orderId;
    const status = $("#track-status");
    const storageKey = "bakery.track." + orderId;
    const fromLink = new URLSearchParams(location.hash.slice(1)).get("token");
    if (fromLink) sessionStorage.setItem(storageKey, fromLink);
    const token = fromLink || sessionStorage.getItem(storageKey);
    if (!token) {
      status.textContent = "This link is missing its private part (after #token=). Please use the whole link you got when you ordered.";
      return;
    }
    let finished = false;
    let shownStatus = "";

    const placed = $("#placed");
    if (placed) placed.focus();
    let confirmed = false;

    function render(order) {
      if (placed && !confirmed) {
        confirmed = true;
        $("#placed-email").textContent = order.email
          ? "We are emailing a confirmation with this page's private link to " + order.email + ". Anyone who has the link can follow your order and confirm its delivery."
          : "This page is your order's private page: anyone who has its address can follow your order and confirm its delivery. Bookmark it.";
      }
      const reached = new Map(order.timeline.map((s) => [s.step, s.at]));
      const said = customerStatus(order, reached);
      if (said !== shownStatus) {
        shownStatus = said;
        status.textContent = said;
      }
      $("#track-summary").textContent =
        order.quantity + " × " + order.productName + ", " + money(order.totalCents, order.currency) + ", for " + order.name;
      $("#track-address").textContent = order.address;
      let last = null;
      for (const item of document.querySelectorAll(".timeline .step")) {
        const step = item.id.replace(/^step-/, "");
        const at = reached.get(step);
        const time = item.querySelector(".when");
        item.classList.toggle("done", Boolean(at));
        item.classList.toggle("pending", !at);
        item.classList.remove("current");
        item.querySelector(".state").textContent = at ? "done" : "not yet";
        if (at) {
          time.dateTime = at;
          time.textContent = when(at);
          last = item;
        } else {
          time.removeAttribute("datetime");
          time.textContent = "";
        }
      }
      if (last) last.classList.add("current");
      // Only a cake the delivery company was told about can have arrived.
      $("#receive").hidden = !(order.status === "out_for_delivery" && reached.has("delivery_notified"));
      const review = $("#review-shown");
      if (order.status === "delivered" && order.orderReview) {
        review.textContent = "Your review: " + order.orderReview;
        review.hidden = false;
      }
      finished = order.status === "delivered" && reached.has("customer_service_notified");
    }

    /** The first step of the timeline the order has not reached yet. */
    function nextStep(order) {
      const reached = new Set(order.timeline.map((s) => s.step));
      for (const item of document.querySelectorAll(".timeline .step")) {
        const step = item.id.replace(/^step-/, "");
        if (!reached.has(step)) return step;
      }
      return null;
    }

    // Each read asks the bakery to answer when the next step happens
    // (`waitFor`, a long-poll), so the page moves on at once without
    // asking over and over. A server that cannot wait answers at once;
    // then the page asks again every 1.5 s.
    let waitFor = null;
    let failures = 0;
    async function poll() {
      let again = 1500;
      try {
        const query = waitFor ? "?waitFor=" + encodeURIComponent(waitFor) : "";
        const answer = await api("GET", "/order/" + encodeURIComponent(orderId) + query, {
          token,
          headers: waitFor ? { Prefer: "wait=25" } : undefined,
        });
        if (answer.ok && answer.data) {
          failures = 0;
          $("#live-note").hidden = true;
          render(answer.data);
          const next = nextStep(answer.data);
          if (answer.waited || next !== waitFor) again = 0;
          waitFor = next;
        } else if ([401, 403, 404].includes(answer.status)) {
          status.textContent = "We could not find this order with this link. Please use the whole link you got when you ordered.";
          return;
        } else {
          failures += 1;
        }
      } catch (_) {
        // Offline for a moment: keep the last state and try again.
        failures += 1;
      }
      // Said once a few tries in a row failed, so a blip goes unnoticed
      // but a page that stopped moving says so.
      if (failures >= 3) $("#live-note").hidden = false;
      if (!finished) setTimeout(poll, failures ? Math.min(1500 * failures, 15000) : again);
    }
    poll();

    const form = $("#receive-form");
    const button = $("#received");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = { orderId };
      const review = $("#orderReview").value.trim();
      if (review) body.orderReview = review;
      button.disabled = true;
      try {
        const answer = await api("POST", "/order/delivered", { token, body });
        if (answer.ok && answer.data) {
          showProblem(["orderReview"], $("#receive-problem"), null, "");
          render(answer.data);
          if (finished) return;
        } else {
          showProblem(["orderReview"], $("#receive-problem"), answer.data, "That did not work; please try again.");
        }
      } catch (_) {
        $("#receive-problem").textContent = "We could not reach the bakery. Please try again.";
      } finally {
        button.disabled = false;
      }
    });
  }

  // ------------------------------------------------------------ staff pages

  const TOKEN_KEY = "bakery.bakerToken";

  /**
   * Sign-in shared by the cake maker's and the operator's pages: the token
   * is kept in sessionStorage (this tab only) and `load(token)` runs every
   * `every` ms; it answers "auth" when the token was refused.
   */
  function staff(load, every) {
    const login = $("#login");
    const work = $("#work");
    let timer = null;

    function showLogin(message) {
      clearTimeout(timer);
      work.hidden = true;
      login.hidden = false;
      $("#token-error").textContent = message || "";
      $("#token").focus();
    }

    async function refresh() {
      clearTimeout(timer);
      const token = sessionStorage.getItem(TOKEN_KEY);
      if (!token) return showLogin();
      let outcome;
      try {
        outcome = await load(token);
      } catch (_) {
        $("#updated").textContent = "Cannot reach the bakery; trying again…";
        timer = setTimeout(refresh, every);
        return;
      }
      if (outcome === "auth") {
        sessionStorage.removeItem(TOKEN_KEY);
        return showLogin("That token was not accepted. Please check it and try again.");
      }
      login.hidden = true;
      work.hidden = false;
      $("#updated").textContent = "Updated " + new Date().toLocaleTimeString();
      timer = setTimeout(refresh, every);
    }

    $("#login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const token = $("#token").value.trim();
      if (!token) {
        $("#token-error").textContent = "Please enter the baker token.";
        return;
      }
      sessionStorage.setItem(TOKEN_KEY, token);
      $("#token").value = "";
      $("#token-error").textContent = "";
      refresh();
    });
    $("#logout").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      $("#work-status").textContent = "";
      showLogin();
    });
    if (sessionStorage.getItem(TOKEN_KEY)) refresh();
    else login.hidden = false;
    return refresh;
  }

  /** Replaces a list's children only when the data changed, so focus and
   *  reading position survive the refreshes. */
  function changed(node, data) {
    const text = JSON.stringify(data);
    if (node.dataset.shown === text) return false;
    node.dataset.shown = text;
    return true;
  }

  /** When an order was placed: "14:05" today, "Tue 3 Dec, 14:05" on another day. */
  function placedWhen(iso) {
    const date = new Date(iso);
    const time = clock(iso);
    if (date.toDateString() === new Date().toDateString()) return time;
    return date.toLocaleDateString([], { weekday: "short", day: "numeric", month: "short" }) + ", " + time;
  }

  /** "1 order", "3 orders". */
  function counted(n, one, many) {
    return n + " " + (n === 1 ? one : many);
  }

  /**
   * The cake maker's list. Rows never move under the pointer: each order's
   * row is made once and changed in place; an order fulfilled elsewhere is
   * marked where it is; new orders are announced and only shown when the
   * cake maker asks. The list shows 25 rows at a time, "Show 25 more"
   * appends. "Mark fulfilled" can be undone for a few seconds before it is
   * sent (`data-undo-ms` on #work).
   */
  function baker() {
    const PAGE = 25;
    const work = $("#work");
    const status = $("#work-status");
    const list = $("#orders");
    const heading = $("#orders-heading");
    const newOrders = $("#new-orders");
    const showNew = $("#show-new");
    const showMore = $("#show-more");
    const fromUrl = Number(new URLSearchParams(location.search).get("undoMs"));
    if (Number.isInteger(fromUrl) && fromUrl >= 1000 && fromUrl <= 30000) work.dataset.undoMs = String(fromUrl);

    const rows = new Map(); // order id → row, for the rows made so far
    let latest = { waiting: [], more: false }; // the last answer
    let waitingIds = new Set();
    let listed = []; // order ids of the list as last built, oldest first
    let known = new Set(); // the same, as a set
    let cursor = 0; // how far into `listed` the rows go
    let limit = PAGE; // rows a rebuild shows
    let built = false;
    let announced = 0;

    function undoMs() {
      const ms = Number(work.dataset.undoMs);
      return Number.isFinite(ms) && ms > 0 ? ms : 5000;
    }

    // A fulfilment in its undo window exists only in this page: leaving
    // (a reload, closing the tab) would drop it, so the browser asks first.
    window.addEventListener("beforeunload", (event) => {
      if (list.querySelector('li[data-state="pending"]')) {
        event.preventDefault();
        event.returnValue = "";
      }
    });

    function makeRow(order) {
      const what = order.quantity + " × " + order.productName;
      const li = el("li", { "data-order-id": order.orderId },
        el("div", { class: "order-text" },
          el("div", { class: "what" }, el("strong", { text: what }), " for " + order.name),
          el("div", { class: "meta" },
            ...(order.placedAt
              ? ["placed ", el("time", { datetime: order.placedAt, text: placedWhen(order.placedAt) }), " · "]
              : []),
            "order " + orderNumber(order.orderId))),
        el("div", { class: "order-action" }));
      const row = { order, what, who: what + " for " + order.name, li, action: li.lastChild, state: "", timer: null, ticker: null };
      rows.set(order.orderId, row);
      showWaiting(row);
      return row;
    }

    function setState(row, state, ...children) {
      row.state = state;
      row.li.dataset.state = state;
      row.action.replaceChildren(...children);
    }

    function note(text, kind) {
      return el("span", { class: "row-note" + (kind ? " " + kind : ""), text });
    }

    function stopTimers(row) {
      clearTimeout(row.timer);
      clearInterval(row.ticker);
      row.timer = row.ticker = null;
    }

    /** The row's "Mark fulfilled" button, with a note when the last try failed. */
    function showWaiting(row, failed) {
      const button = el("button", { type: "button", class: "small", "aria-label": "Mark fulfilled: " + row.who }, "Mark fulfilled");
      button.addEventListener("click", () => startFulfil(row));
      setState(row, "waiting", ...(failed ? [note(failed, "warn"), " "] : []), button);
      return button;
    }

    /** Focus moves on to the next order that can be marked (or back up). */
    function focusAfter(row) {
      const items = Array.from(list.children);
      const at = items.indexOf(row.li);
      const ready = (li) => li.dataset.state === "waiting";
      const next = items.slice(at + 1).find(ready) || items.slice(0, Math.max(at, 0)).reverse().find(ready);
      if (next) next.querySelector(".order-action button").focus();
      else heading.focus();
    }

    function startFulfil(row) {
      const ms = undoMs();
      const deadline = Date.now() + ms;
      const left = note("");
      const tick = () => {
        left.textContent = "Marking fulfilled in " + Math.max(1, Math.ceil((deadline - Date.now()) / 1000)) + " s —";
      };
      tick();
      const undo = el("button", { type: "button", class: "small secondary", "aria-label": "Undo marking fulfilled: " + row.who }, "Undo");
      undo.addEventListener("click", () => undoFulfil(row));
      const hadFocus = row.li.contains(document.activeElement);
      setState(row, "pending", left, " ", undo);
      if (hadFocus) undo.focus();
      row.ticker = setInterval(tick, 250);
      row.timer = setTimeout(() => send(row), ms);
      status.textContent = "Marking " + row.who + " fulfilled in " + Math.round(ms / 1000) + " seconds; Undo is on its row.";
    }

    function undoFulfil(row) {
      stopTimers(row);
      const hadFocus = row.li.contains(document.activeElement);
      const button = showWaiting(row);
      if (hadFocus) button.focus();
      status.textContent = "Not marked: " + row.who + " is still waiting.";
    }

    async function send(row) {
      stopTimers(row);
      const hadFocus = row.li.contains(document.activeElement);
      setState(row, "sending", note("Marking fulfilled…"));
      if (hadFocus) focusAfter(row);
      let answer = null;
      try {
        answer = await api("POST", "/order/fulfilled", {
          token: sessionStorage.getItem(TOKEN_KEY),
          body: { orderId: row.order.orderId },
        });
      } catch (_) {
        answer = null;
      }
      if (answer && answer.ok) {
        setState(row, "done", note("Marked fulfilled", "ok"));
        status.textContent = "Marked fulfilled: " + row.who + ".";
      } else if (answer && answer.status === 409) {
        setState(row, "elsewhere", note("Fulfilled elsewhere"));
        status.textContent = row.who + " was fulfilled elsewhere.";
      } else {
        const why = answer ? (answer.data && answer.data.detail) || "error " + answer.status : "the bakery could not be reached";
        showWaiting(row, "Not marked: " + why + ".");
        status.textContent = "Could not mark " + row.who + " fulfilled: " + why + ". Please try again.";
      }
    }

    function ordersById() {
      return new Map(latest.waiting.map((order) => [order.orderId, order]));
    }

    /** Appends up to `count` rows from `listed`, of orders still waiting; answers them. */
    function append(count) {
      const orders = ordersById();
      const added = [];
      while (cursor < listed.length && added.length < count) {
        const order = orders.get(listed[cursor++]);
        if (order) added.push(rows.get(order.orderId) || makeRow(order));
      }
      list.append(...added.map((row) => row.li));
      return added;
    }

    /** Builds the list afresh from the last answer: only when asked to. */
    function build() {
      listed = latest.waiting.map((order) => order.orderId);
      known = new Set(listed);
      for (const [id, row] of rows) {
        if (!known.has(id)) {
          stopTimers(row);
          rows.delete(id);
        }
      }
      cursor = 0;
      list.replaceChildren();
      append(limit);
      if (!listed.length) list.append(el("li", { class: "empty", text: "No orders waiting. Time for a coffee." }));
      built = true;
      announced = 0;
      newOrders.textContent = "";
      showNew.classList.add("invisible");
      showCounts();
    }

    /** Marks in place the rows of orders that are no longer waiting, and counts new ones. */
    function update() {
      for (const row of rows.values()) {
        if ((row.state === "waiting" || row.state === "pending") && !waitingIds.has(row.order.orderId)) {
          const hadFocus = row.li.contains(document.activeElement);
          stopTimers(row);
          setState(row, "elsewhere", note("Fulfilled elsewhere"));
          if (hadFocus) focusAfter(row);
        }
      }
      const fresh = latest.waiting.filter((order) => !known.has(order.orderId)).length;
      if (fresh !== announced) {
        announced = fresh;
        newOrders.textContent = fresh ? counted(fresh, "new order", "new orders") + " —" : "";
        showNew.classList.toggle("invisible", !fresh);
      }
      showCounts();
    }

    function showCounts() {
      const count = latest.waiting.length;
      $("#waiting-count").textContent = latest.more
        ? "More than " + count + " orders waiting"
        : count
          ? counted(count, "order", "orders") + " waiting"
          : "No orders waiting";
      const shown = list.querySelectorAll("li[data-order-id]").length;
      const rest = listed.slice(cursor).filter((id) => waitingIds.has(id)).length;
      showMore.hidden = rest === 0;
      showMore.textContent = "Show " + Math.min(PAGE, rest) + " more";
      $("#shown-count").textContent = !shown
        ? ""
        : rest
          ? "Showing the oldest " + shown + "; " + rest + " more below."
          : "Showing all " + counted(shown, "order", "orders") + " of this list.";
    }

    function showTotals(totals) {
      const count = latest.waiting.length;
      $("#totals-hint").textContent = !count
        ? "Per cake, over all waiting orders"
        : latest.more
          ? "Per cake, over the oldest " + count + " waiting orders"
          : "Per cake, over " + (count === 1 ? "the one waiting order" : "all " + count + " waiting orders");
      const totalsList = $("#totals");
      if (changed(totalsList, totals)) {
        totalsList.replaceChildren(
          ...(totals.length
            ? totals.map((t) =>
                el("li", {}, el("span", { text: t.productName }),
                  el("span", { class: "count", text: String(t.quantity) })))
            : [el("li", { class: "empty", text: "Nothing to bake." })]));
      }
    }

    staff(async (token) => {
      const answer = await api("GET", "/baker/orders", { token });
      if (answer.status === 401 || answer.status === 403) return "auth";
      if (!answer.ok || !answer.data) throw new Error("unavailable");
      latest = { waiting: answer.data.waiting, more: answer.data.more };
      waitingIds = new Set(latest.waiting.map((order) => order.orderId));
      showTotals(answer.data.totals);
      if (built) update();
      else build();
      return "ok";
    }, 3000);

    showMore.addEventListener("click", () => {
      limit += PAGE;
      const added = append(PAGE);
      showCounts();
      const first = added.find((row) => row.state === "waiting");
      if (first) first.li.querySelector(".order-action button").focus();
    });

    showNew.addEventListener("click", () => {
      const fresh = latest.waiting.filter((order) => !known.has(order.orderId)).map((order) => order.orderId);
      build();
      const first = fresh.map((id) => rows.get(id)).find(Boolean);
      if (first) {
        first.li.querySelector(".order-action button").focus();
        newOrders.textContent = "List updated: " + counted(fresh.length, "new order", "new orders") + " at the end.";
      } else {
        heading.focus();
        newOrders.textContent = "List updated: the " + counted(fresh.length, "new order comes", "new orders come") + " after the oldest, below.";
      }
    });
  }

  /** The dead letters' column names, on their cells when rows are cards. */
  const deadLabels = {
    id: "#",
    source: "Source",
    order: "Order",
    reason: "Reason",
    tries: "Tries by the bakery",
    failed: "Failed at",
    action: "",
  };

  function operator() {
    const status = $("#work-status");
    const refresh = staff(async (token) => {
      const answer = await api("GET", "/operator/status", { token });
      if (answer.status === 401 || answer.status === 403) return "auth";
      if (!answer.ok || !answer.data) throw new Error("unavailable");
      const data = answer.data;

      const consumers = $("#consumers");
      if (changed(consumers, data.consumers)) {
        consumers.replaceChildren(...data.consumers.map((c) =>
          el("tr", {}, el("td", { text: c.name }),
            el("td", { class: "num" + (c.lag > 0 ? " warn" : ""), text: c.lag == null ? "unknown" : String(c.lag) }))));
      }
      const queues = $("#queues");
      if (changed(queues, data.queues)) {
        queues.replaceChildren(...data.queues.map((q) =>
          el("tr", {}, el("td", { text: q.name }),
            el("td", { class: "num", text: String(q.visible) }),
            el("td", { class: "num", text: String(q.inFlight) }))));
      }
      const letters = $("#dead-letters");
      $("#dead-table").hidden = data.deadLetters.length === 0;
      $("#dead-hint").hidden = data.deadLetters.length === 0;
      $("#dead-empty").hidden = data.deadLetters.length > 0;
      if (changed(letters, data.deadLetters)) {
        // Each cell also carries its column's name, shown only when the
        // rows are cards (on a phone); screen readers have the headers.
        const cell = (name, attrs, ...content) =>
          el("td", Object.assign({ role: "cell", class: "c-" + name }, attrs),
            el("span", { class: "cell-label", "aria-hidden": "true", text: deadLabels[name] }), ...content);
        letters.replaceChildren(...data.deadLetters.map((letter) => {
          const button = el("button", {
            type: "button",
            class: "small",
            "aria-label": "Redrive dead letter " + letter.id + " from " + letter.source,
          }, "Redrive");
          button.addEventListener("click", () => redrive(letter, button));
          return el("tr", { role: "row" },
            cell("id", {}, letter.id),
            cell("source", {}, letter.source),
            cell("order", { title: letter.orderId || "" },
              el("span", { class: "order-number ref", text: letter.orderId ? orderNumber(letter.orderId) : "–" })),
            cell("reason", { class: "c-reason reason" }, letter.reason),
            cell("tries", { class: "c-tries num" }, String(letter.attempts)),
            cell("failed", {}, when(letter.failedAt)),
            cell("action", {}, button));
        }));
      }
      const errors = $("#recent-errors");
      $("#errors-empty").hidden = data.recentErrors.length > 0;
      if (changed(errors, data.recentErrors)) {
        errors.replaceChildren(...data.recentErrors.map((e) => {
          const tag = e.dead ? "dead letter" : e.redrivenAt ? "redriven " + clock(e.redrivenAt) : "retrying";
          return el("li", {},
            el("span", { class: "tag" + (e.dead ? " dead" : e.redrivenAt ? " redriven" : ""), text: tag }), " ",
            el("span", { class: "source", text: e.source }),
            e.at ? " at " + when(e.at) : "",
            ": " + e.reason);
        }));
      }
      return "ok";
    }, 2000);

    async function redrive(letter, button) {
      button.disabled = true;
      const token = sessionStorage.getItem(TOKEN_KEY);
      try {
        const answer = await api("POST", "/operator/dead-letters/" + encodeURIComponent(letter.id) + "/redrive", { token });
        status.textContent = answer.ok
          ? "Dead letter " + letter.id + " from " + letter.source + " redriven: it will be tried again."
          : "Could not redrive " + letter.id + ": " + ((answer.data && answer.data.detail) || answer.status);
      } catch (_) {
        status.textContent = "Could not reach the bakery; please try again.";
      }
      refresh();
    }
  }

  const pages = { shop, track, baker, operator };
  const page = pages[document.body.dataset.page];
  if (page) page();
})();
