// Opens the gateway's console in a real headless Chromium as an admin, switches the
// flag `payments-decline-all` on with its button (a screenshot of the overview, with
// its service map, beside the given one), follows the recent trace that
// crosses the most services to its waterfall, takes a screenshot, and prints what it
// saw as one line of JSON.
//
//   NODE_PATH=<folder with playwright-core> node console.cjs <gateway URL> <admin token> <screenshot.png>
const { chromium } = require('playwright-core');

async function main() {
  const [url, token, screenshot] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu'],
  });
  try {
    const context = await browser.newContext({
      extraHTTPHeaders: { authorization: `Bearer ${token}` },
      viewport: { width: 1280, height: 900 },
    });
    const page = await context.newPage();
    const overview = await page.goto(`${url}/console`);
    if (overview.status() !== 200) throw new Error(`/console answered ${overview.status()}`);
    await page.waitForSelector('table.traces');
    const sections = await page.$$eval('h2', (headings) => headings.map((h) => h.textContent));
    const orders = await page.$$eval('table.checkouts tr[data-status]', (rows) =>
      Object.fromEntries(rows.map((row) => [row.dataset.status, Number(row.cells[1].textContent)])),
    );
    const flag = 'form[action="/console/flags/payments-decline-all"]';
    const before = await page.$eval(`${flag} button[aria-pressed=true]`, (button) => button.value);
    await Promise.all([page.waitForNavigation(), page.click(`${flag} button[value=on]`)]);
    if (!page.url().endsWith('/console#flags')) {
      throw new Error(`the switch led to ${page.url()}: ${await page.content()}`);
    }
    const after = await page.$eval(`${flag} button[aria-pressed=true]`, (button) => button.value);
    const map = await page.$$eval('svg.graph .node', (nodes) => nodes.length);
    await page.screenshot({ path: screenshot.replace(/\.png$/, '-overview.png'), fullPage: true });
    const traces = await page.$$eval('table.traces tr[data-services]', (rows) =>
      rows.map((row) => ({
        services: Number(row.dataset.services),
        href: row.querySelector('a').getAttribute('href'),
      })),
    );
    if (traces.length === 0) throw new Error('the console lists no trace');
    traces.sort((a, b) => b.services - a.services);
    const widest = traces[0];
    const trace = await page.goto(`${url}${widest.href}`);
    if (trace.status() !== 200) throw new Error(`${widest.href} answered ${trace.status()}`);
    await page.waitForSelector('table.waterfall tr.span');
    const services = await page.$$eval('table.waterfall tr.span', (rows) => [
      ...new Set(rows.map((row) => row.dataset.service)),
    ]);
    const bars = await page.$$eval('table.waterfall .bar span', (spans) =>
      spans.filter((span) => span.getBoundingClientRect().width > 0).length,
    );
    await page.screenshot({ path: screenshot, fullPage: true });
    console.log(JSON.stringify({ sections, services, bars, map, orders, flag: { before, after }, title: await page.title() }));
  } finally {
    await browser.close();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
