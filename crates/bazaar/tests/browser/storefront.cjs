// The storefront in a real headless Chromium, as people use it: the journeys of
// crates/bazaar/tests/storefront.rs. Each journey throws on the first thing that is
// not as a shopper should see it; at the end one line of JSON says what was checked.
//
//   NODE_PATH=<folder with playwright-core and axe-core> \
//     node storefront.cjs <shop URL> <admin email> <password> <screenshot folder> <declined product slug> <mailbox folder>
const fs = require('fs');
const path = require('path');
const { chromium } = require('playwright-core');

const [base, adminEmail, password, shots, declinedSlug, mailbox] = process.argv.slice(2);
const axeSource = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const WAIT = 30000;
const checked = [];
const audited = [];

function ensure(condition, message) {
  if (!condition) throw new Error(message);
}

// A browser context whose every page fails the run on a script error, a console
// error (a CSP violation, a broken picture) or an alert (injected script).
async function person(browser, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1366, height: 900 }, ...options });
  context.on('page', watch);
  const page = await context.newPage();
  return { context, page };
}

const problems = [];
function watch(page) {
  page.on('console', (message) => {
    if (message.type() !== 'error') return;
    // A page answered 403, 404 or 422 on purpose: Chromium reports the document's own
    // status as a failed load. Anything else (a picture, a script, CSP) is a problem.
    const own = message.location().url === page.url() && message.text().startsWith('Failed to load resource');
    if (!own) problems.push(`${page.url()}: console error: ${message.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`${page.url()}: script error: ${error.message}`));
  page.on('dialog', async (dialog) => {
    problems.push(`${page.url()}: a ${dialog.type()} dialog opened: ${dialog.message()}`);
    await dialog.dismiss();
  });
}

// axe-core on the page as it is: no serious or critical violation.
async function audit(page, name) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(async () =>
    // eslint-disable-next-line no-undef
    axe.run(document, { resultTypes: ['violations'] }),
  );
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  ensure(
    bad.length === 0,
    `${name}: accessibility violations: ${bad
      .map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`)
      .join('; ')}`,
  );
  audited.push(name);
}

async function screenshot(page, name) {
  for (const [width, height] of [[1366, 900], [390, 844]]) {
    await page.setViewportSize({ width, height });
    await page.screenshot({ path: path.join(shots, `${name}-${width}.png`), fullPage: true });
  }
  await page.setViewportSize({ width: 1366, height: 900 });
}

async function go(page, where, status = 200) {
  const response = await page.goto(`${base}${where}`);
  ensure(response.status() === status, `${where} answered ${response.status()}, not ${status}`);
  return response;
}

async function addToCart(page, slug, quantity) {
  await go(page, `/products/${slug}`);
  await page.fill('#quantity', String(quantity));
  await page.click('form[action="/cart/items"] button[type=submit]');
  // In place with htmx, or on the page it comes back to without JavaScript.
  await page.waitForSelector('text=Added to your cart');
}

// The link of the newest confirmation email to `email` in the shop's mailbox folder
// (an .eml file per email, named by a time-ordered id), waiting for it; each is used
// once, and then deleted.
async function confirmationLink(email) {
  for (let attempt = 0; attempt < 200; attempt++) {
    const names = fs.readdirSync(mailbox).filter((name) => name.endsWith('.eml') && !name.startsWith('.')).sort().reverse();
    for (const name of names) {
      const file = path.join(mailbox, name);
      const [head, ...rest] = fs.readFileSync(file, 'utf8').split('\r\n\r\n');
      const headers = head.replace(/\r\n[ \t]/g, ' ').split('\r\n');
      const header = (field) => (headers.find((line) => line.toLowerCase().startsWith(`${field}:`)) || '').slice(field.length + 1).trim();
      if (header('to').toLowerCase() !== email || header('subject') !== 'Confirm your Bazaar account') continue;
      let body = rest.join('\r\n\r\n');
      if (header('content-transfer-encoding').toLowerCase() === 'quoted-printable') {
        body = body.replace(/=\r\n/g, '').replace(/=([0-9A-F]{2})/g, (_, hex) => String.fromCharCode(parseInt(hex, 16)));
      }
      const link = body.split(/\r?\n/).map((line) => line.trim()).find((line) => line.includes('/confirm?token='));
      if (!link) continue;
      fs.unlinkSync(file);
      return link;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`no confirmation email to ${email} arrived`);
}

// Registers, then confirms the address with the emailed link in the same browser,
// which goes on where it registered from.
async function register(page, email, auditing = false) {
  await page.fill('#email', email);
  await page.fill('#password', password);
  await page.click('form[action="/register"] button[type=submit]');
  await page.waitForSelector('h1:has-text("Check your email")');
  ensure((await page.textContent('main')).includes(email), 'the page does not say where the email went');
  if (auditing) await audit(page, 'check-email');
  await page.goto(await confirmationLink(email));
  if (auditing) await audit(page, 'confirm');
  await page.fill('#password', password);
  await page.click('form[action="/confirm"] button[type=submit]');
  await page.waitForLoadState();
}

async function payWithNewCard(page, number) {
  await page.check('#pm-new');
  await page.fill('#cc-number', number);
  await page.selectOption('#cc-exp-month', '12');
  await page.selectOption('#cc-exp-year', { index: 5 });
  await page.fill('#cc-cvc', '123');
  await Promise.all([page.waitForURL(/\/orders\/[0-9a-f-]+$/, { timeout: WAIT }), page.click('form[action="/checkout"] button[type=submit]')]);
}

async function statusOf(page) {
  return (await page.textContent('#order-status')).trim();
}

// 1. A new visitor browses, searches, adds two products as a guest, registers, finds
// the cart intact, checks out with 4242…, sees the order confirmed without reloading,
// and finds the confirmation email in the inbox.
async function newVisitor(browser) {
  const { page } = await person(browser);
  await go(page, '/');
  await audit(page, 'home');
  await screenshot(page, 'home');
  await page.click('.category-list a[href="/products?category=kitchen"]');
  ensure((await page.textContent('h1')).includes('Kitchen'), 'the category page is not Kitchen');
  await audit(page, 'listing');
  await page.fill('#site-search', 'mug');
  await page.press('#site-search', 'Enter');
  await page.waitForURL(/\/products\?q=mug/);
  ensure((await page.textContent('h1')).includes('mug'), 'the search results say nothing of mug');
  await page.click('.product-card__name >> text=Enamel Camp Mug');
  await page.waitForURL(/\/products\/enamel-camp-mug$/);
  await audit(page, 'product');
  await screenshot(page, 'product');
  // With htmx the product page stays; the header's count follows.
  await page.fill('#quantity', '2');
  await page.click('form[action="/cart/items"] button[type=submit]');
  await page.waitForSelector('#cart-status >> text=Added to your cart');
  ensure((await page.textContent('#cart-count')).startsWith('2'), 'the header does not count 2 items');
  await addToCart(page, 'a5-dot-grid-notebook', 1);
  await go(page, '/cart');
  ensure((await page.$$('table.cart tbody tr')).length === 2, 'the guest cart does not hold two lines');
  await audit(page, 'cart');
  await screenshot(page, 'cart');
  await page.click('a[href="/checkout"]');
  await page.waitForURL(/\/sign-in\?next=%2Fcheckout/);
  await audit(page, 'sign-in');
  await page.click('a[href^="/register"]');
  await page.waitForURL(/\/register/);
  await audit(page, 'register');
  await register(page, 'ada@example.com', true);
  await page.waitForURL(/\/checkout$/);
  const summary = await page.textContent('.totals');
  ensure(summary.includes('Enamel Camp Mug') && summary.includes('A5 Dot Grid Notebook'), `the cart did not come along: ${summary}`);
  ensure(summary.includes('2 × Enamel Camp Mug'), `the quantities did not come along: ${summary}`);
  await audit(page, 'checkout');
  await screenshot(page, 'checkout');
  await payWithNewCard(page, '4242 4242 4242 4242');
  const orderUrl = page.url();
  let navigations = 0;
  page.on('framenavigated', (frame) => {
    if (frame === page.mainFrame()) navigations += 1;
  });
  await page.waitForFunction(() => document.querySelector('#order-status')?.textContent.includes('Confirmed'), null, { timeout: WAIT });
  ensure(navigations === 0, `the order page reloaded ${navigations} time(s) to show the result`);
  ensure(page.url() === orderUrl, 'the order page moved');
  ensure((await page.$$('.step--done')).length === 4, 'not every step is done on a confirmed order');
  await audit(page, 'order');
  await screenshot(page, 'order');
  const number = (await page.textContent('h1')).replace('Order', '').trim();
  // The email is sent after the confirmation; the inbox shows it once it is written.
  for (let attempt = 0; ; attempt += 1) {
    await go(page, '/inbox');
    if (await page.$('.inbox a >> text=/confirmed/i')) break;
    ensure(attempt < 60, 'no confirmation email in the inbox');
    await page.waitForTimeout(500);
  }
  await audit(page, 'inbox');
  await page.click('.inbox a >> text=/confirmed/i');
  await page.waitForURL(/\/inbox\//);
  const email = await page.textContent('.email pre');
  ensure(email.toLowerCase().includes(number.toLowerCase()), `the email does not name order ${number}`);
  await audit(page, 'email');
  await go(page, '/orders');
  ensure((await page.textContent('table.orders')).includes(number), 'the order history does not list the order');
  await audit(page, 'orders');
  await go(page, '/account');
  ensure((await page.textContent('main')).includes('ada@example.com'), 'the account page does not name the account');
  ensure((await page.textContent('main')).includes('4242'), 'the account page does not list the saved card');
  await audit(page, 'account');
  checked.push('new visitor: browse, search, guest cart, register, checkout, live progress, email');
  return page;
}

// 2. A declined card: the order page says cancelled and why.
async function declinedCard(browser) {
  const { page } = await person(browser);
  await go(page, '/register');
  await register(page, 'grace@example.com');
  await addToCart(page, declinedSlug, 2);
  await go(page, '/checkout');
  await payWithNewCard(page, '4000 0000 0000 0002');
  await page.waitForFunction(() => document.querySelector('#order-status')?.textContent.includes('Cancelled'), null, { timeout: WAIT });
  const explained = await page.textContent('.order-explainer');
  ensure(/card was declined/.test(explained) && /not been charged/.test(explained), `the cancellation is not explained: ${explained}`);
  ensure((await page.$$('.step--failed')).length === 1, 'no step is shown as failed');
  await audit(page, 'order (declined)');
  checked.push('declined card: cancelled, and why');
  return page;
}

// 3. A large order is held for review; an admin approves it in the back-office; the
// customer's order page shows confirmed.
async function heldOrder(browser, admin) {
  const { page } = await person(browser);
  await go(page, '/register');
  await register(page, 'katherine@example.com');
  await addToCart(page, 'wireless-over-ear-headphones', 3);
  await go(page, '/checkout');
  await payWithNewCard(page, '4242 4242 4242 4242');
  await page.waitForFunction(() => document.querySelector('#order-status')?.textContent.includes('Held for review'), null, { timeout: WAIT });
  const number = (await page.textContent('h1')).replace('Order', '').trim();
  await go(admin, '/admin/orders');
  await audit(admin, 'back-office orders');
  await screenshot(admin, 'back-office-orders');
  const row = admin.locator('tr', { hasText: number });
  await row.locator('button', { hasText: 'Approve' }).click();
  await admin.waitForSelector('.flash >> text=approved');
  await page.waitForFunction(() => document.querySelector('#order-status')?.textContent.includes('Confirmed'), null, { timeout: WAIT });
  checked.push('held order: approved in the back-office, confirmed for the customer');
}

// 4. An admin creates a product whose name is a script; it is text everywhere; a
// customer cannot reach the back-office.
async function hostileProductName(admin, customer) {
  const name = '<script>alert(1)</script> Teapot';
  await go(admin, '/admin/products/new');
  await audit(admin, 'back-office product form');
  await admin.fill('#p-name', name);
  await admin.fill('#p-slug', 'script-teapot');
  await admin.fill('#p-description', '<img src=x onerror=alert(2)> A teapot.');
  await admin.selectOption('#p-category', 'kitchen');
  await admin.fill('#p-price', 'abc');
  await admin.click('form.admin-form button[type=submit]');
  ensure(
    (await admin.textContent('#p-price-error')).length > 0 && (await admin.getAttribute('#p-price', 'aria-invalid')) === 'true',
    'a bad price is not shown next to its field',
  );
  await admin.fill('#p-price', '24.50');
  await admin.click('form.admin-form button[type=submit]');
  await admin.waitForURL(/\/admin\/products$/);
  ensure((await admin.textContent('table.admin-table')).includes(name), 'the back-office does not list the product by its name');
  await audit(admin, 'back-office products');
  await screenshot(admin, 'back-office');
  await go(admin, '/admin/stock');
  await audit(admin, 'back-office stock');
  await go(admin, '/admin/categories');
  await audit(admin, 'back-office categories');
  for (const where of ['/products/script-teapot', '/products?q=teapot']) {
    await go(customer, where);
    const shown = await customer.textContent(where.includes('?') ? '.product-grid' : 'h1');
    ensure(shown.includes(name), `${where} does not show the name as text: ${shown}`);
    ensure((await customer.$$('main script')).length === 0, `${where} has a script element in its content`);
  }
  const refused = await customer.goto(`${base}/admin`);
  ensure(refused.status() === 403, `a customer reached the back-office (${refused.status()})`);
  ensure((await customer.textContent('h1')).includes('staff'), 'the 403 page does not say why');
  await audit(customer, '403 page');
  await go(customer, '/no-such-page', 404);
  await audit(customer, '404 page');
  checked.push('hostile product name: text everywhere; the back-office is 403 for customers');
}

// 5. A state-changing form posted without its CSRF token is refused.
async function forgedForms(customer) {
  await go(customer, '/products/enamel-camp-mug');
  const token = await customer.inputValue('form[action="/cart/items"] input[name=csrf]');
  const productId = await customer.inputValue('form[action="/cart/items"] input[name=product_id]');
  const before = await customer.textContent('#cart-count').catch(() => '0');
  const post = (form, headers = {}) =>
    customer.request.post(`${base}/cart/items`, { form, headers, maxRedirects: 0 });
  const without = await post({ product_id: productId, quantity: '1' });
  ensure(without.status() === 403, `a form without its CSRF token answered ${without.status()}`);
  const wrong = await post({ product_id: productId, quantity: '1', csrf: 'A'.repeat(43) });
  ensure(wrong.status() === 403, `a form with another CSRF token answered ${wrong.status()}`);
  const crossSite = await post({ product_id: productId, quantity: '1', csrf: token }, { 'sec-fetch-site': 'cross-site' });
  ensure(crossSite.status() === 403, `a cross-site form answered ${crossSite.status()}`);
  await go(customer, '/products/enamel-camp-mug');
  const after = await customer.textContent('#cart-count').catch(() => '0');
  ensure(before === after, `a refused form changed the cart (${before} → ${after})`);
  const genuine = await post({ product_id: productId, quantity: '1', csrf: token });
  ensure(genuine.status() === 303, `the genuine form answered ${genuine.status()}`);
  checked.push('forms without their CSRF token are refused and change nothing');
}

// The core journey with JavaScript off: browse, cart, checkout, and the order page
// refreshing itself to the end.
async function withoutJavaScript(browser) {
  const { page } = await person(browser, { javaScriptEnabled: false });
  await addToCart(page, 'cork-mouse-pad', 1);
  ensure(await page.$('.flash >> text=Added to your cart'), 'no message says it was added');
  await go(page, '/cart');
  ensure((await page.$$('table.cart tbody tr')).length === 1, 'the cart has no line without JavaScript');
  await page.fill('#qty-1', '2');
  await page.click('table.cart button >> text=Update');
  await page.waitForURL(/\/cart$/);
  ensure((await page.inputValue('#qty-1')) === '2', 'the quantity did not change without JavaScript');
  await page.click('a[href="/checkout"]');
  await page.click('a[href^="/register"]');
  await register(page, 'hedy@example.com');
  await page.waitForURL(/\/checkout$/);
  await payWithNewCard(page, '4242 4242 4242 4242');
  await page.waitForSelector('#order-status >> text=Confirmed', { timeout: WAIT });
  checked.push('without JavaScript: browse, cart, checkout, progress');
}

// 7. A release flag: an admin switches the express checkout on in the console, and a
// customer with a saved card pays in one click.
async function expressCheckout(admin, customer) {
  const flag = 'form[action="/console/flags/storefront-express-checkout"]';
  await go(admin, '/console');
  await Promise.all([admin.waitForNavigation(), admin.click(`${flag} button[value=on]`)]);
  const chosen = await admin.$eval(`${flag} button[aria-pressed=true]`, (button) => button.value);
  ensure(chosen === 'on', `the console did not switch the express checkout on (${chosen})`);
  await addToCart(customer, 'enamel-camp-mug', 1);
  await go(customer, '/checkout');
  ensure((await customer.textContent('main')).includes('4242'), 'the express checkout does not offer the saved card');
  ensure(await customer.$('a[href="/checkout?pay=another"]'), 'the express checkout has no way to pay another way');
  await audit(customer, 'express checkout');
  await screenshot(customer, 'checkout-express');
  await Promise.all([
    customer.waitForURL(/\/orders\/[0-9a-f-]+$/, { timeout: WAIT }),
    customer.click('form[action="/checkout"] button[type=submit] >> text=Pay now'),
  ]);
  await customer.waitForSelector('#order-status >> text=Confirmed', { timeout: WAIT });
  checked.push('release flag: switched on in the console, a saved card pays in one click');
}

async function main() {
  fs.mkdirSync(shots, { recursive: true });
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const customer = await newVisitor(browser);
    await declinedCard(browser);
    const { page: admin } = await person(browser);
    await go(admin, '/sign-in');
    await admin.fill('#email', adminEmail);
    await admin.fill('#password', password);
    await admin.click('form[action="/sign-in"] button[type=submit]');
    await admin.waitForSelector('.site-nav >> text=Back office');
    await heldOrder(browser, admin);
    await hostileProductName(admin, customer);
    await forgedForms(customer);
    await withoutJavaScript(browser);
    // An admin signed in to the shop is signed in to the console.
    await go(admin, '/console');
    ensure((await admin.textContent('h1')).includes('console'), 'the admin is not signed in to the console');
    checked.push('the shop\'s admin session opens the console');
    await expressCheckout(admin, customer);
  } finally {
    await browser.close();
  }
  ensure(problems.length === 0, `the pages reported problems:\n${problems.join('\n')}`);
  console.log(JSON.stringify({ checked, audited }));
}

main().catch((error) => {
  console.error(error.stack || String(error));
  if (problems.length) console.error(problems.join('\n'));
  process.exit(1);
});
