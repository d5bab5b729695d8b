// Drives the operator console of a running local service in Debian's
// chromium. Started by tests/tests/integration/console_browser.rs, which
// prepares the service (runs, a dead letter, a conflict, a discrepancy)
// and checks the store afterwards; this script does what a person does on
// the page and fails on the first thing that does not happen.
//
// Environment: SYNCLINE_URL, SYNCLINE_ADMIN_TOKEN, SYNCLINE_JWT_SECRET (to
// sign an expired token and one that expires seconds after it is used),
// SYNCLINE_LINK (a signed link), SYNCLINE_SOURCE, SYNCLINE_RECORD (entity/id for the trail),
// SYNCLINE_SHOTS (a folder for screenshots; none taken when unset),
// CHROMIUM (default /usr/bin/chromium).
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { createHmac } from 'node:crypto';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const url = env('SYNCLINE_URL');
const consoleUrl = `${url}/v1/admin/console`;
const source = env('SYNCLINE_SOURCE');
const shots = process.env.SYNCLINE_SHOTS;
if (shots) mkdirSync(shots, { recursive: true });

// An HS256 admin token of tenant demo expiring `seconds` from now.
function adminToken(seconds) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const body = `${part({ alg: 'HS256', typ: 'JWT' })}.${part({
    sub: 'console-test', tenant: 'demo', scope: 'admin', exp: Math.floor(Date.now() / 1000) + seconds,
  })}`;
  const signature = createHmac('sha256', env('SYNCLINE_JWT_SECRET')).update(body).digest('base64url');
  return `${body}.${signature}`;
}

const steps = [];
function step(name) {
  steps.push(name);
  console.log(`step: ${name}`);
}
function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const problems = [];
const requests = [];

async function newPage() {
  const context = await browser.newContext({ viewport: { width: 1360, height: 900 } });
  const page = await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('request', (r) => requests.push(r.url()));
  return { context, page };
}

async function shot(page, name) {
  if (!shots) return;
  await page.waitForTimeout(300);
  await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
}

async function notice(page, kind) {
  const box = page.locator(`#notice[data-kind="${kind}"]`);
  await box.waitFor({ state: 'visible', timeout: 15000 });
  return (await box.textContent()).trim();
}

async function signIn(page, token) {
  await page.locator('#token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

try {
  const { page } = await newPage();

  step('the page asks for a token, and an expired one is refused with the reason');
  await page.goto(consoleUrl);
  await page.locator('#token').waitFor();
  await shot(page, 'sign-in');
  await signIn(page, adminToken(-120));
  const refusal = page.locator('#sign-in-error', { hasText: /\S/ });
  await refusal.waitFor({ timeout: 15000 });
  const refused = await refusal.textContent();
  check(/session ended/i.test(refused) && /expired/i.test(refused), `expired token message: ${refused}`);
  check(await page.locator('#nav').isHidden(), 'no console behind a refused token');

  step('a good token opens the overview: health, sources, destinations, charts');
  await signIn(page, env('SYNCLINE_ADMIN_TOKEN'));
  await page.locator(`tr[data-source="${source}"]`).waitFor();
  check(!page.url().includes('token'), `no token in the address: ${page.url()}`);
  check(await page.evaluate(() => sessionStorage.getItem('syncline.admin-token')) !== null, 'token kept for the tab');
  check(await page.evaluate(() => localStorage.length) === 0, 'nothing in localStorage');
  const health = (await page.locator('#overall .badge').textContent()).trim();
  check(['healthy', 'degraded', 'unhealthy'].includes(health), `health badge: ${health}`);
  const reasons = await page.locator('#overall li').allTextContents();
  check(reasons.some((r) => /dead letter/.test(r)), `health says why: ${reasons}`);
  check(await page.locator('tr[data-destination]').count() >= 1, 'destinations listed');
  await page.locator('#chart-dead canvas').waitFor();
  await page.locator('#chart-lag canvas').waitFor();
  const deadPoints = Number(await page.locator('#chart-dead [data-points]').getAttribute('data-points'));
  check(deadPoints >= 2, `dead-letter chart has the samples: ${deadPoints}`);
  await shot(page, 'overview');

  step("a source's page shows its runs chart");
  await page.locator(`tr[data-source="${source}"] a`).click();
  await page.locator('#chart-duration canvas').waitFor();
  await page.locator('#chart-records canvas').waitFor();
  const points = Number(await page.locator('#chart-records [data-points]').getAttribute('data-points'));
  check(points >= 2, `records chart has the runs: ${points}`);
  const runsBefore = await page.locator('tr[data-run]').count();
  await shot(page, 'source');

  step('sync now, and the new run appears and finishes without a reload');
  await page.locator(`tr[data-source="${source}"] button[data-action="sync"]`).click();
  const queued = await notice(page, 'info');
  check(/Queued a sync run/.test(queued), `queued notice: ${queued}`);
  await page.waitForFunction((before) => {
    const rows = [...document.querySelectorAll('tr[data-run]')];
    return rows.length > before && rows[0].dataset.status === 'succeeded';
  }, runsBefore, { timeout: 30000 });
  const newest = await page.locator('tr[data-run]').first().textContent();
  check(/manual/.test(newest), `the newest run is the manual one: ${newest}`);

  step("bad input gets the API's error, shown to the person");
  const interval = page.locator(`tr[data-source="${source}"] input.interval`);
  await interval.fill('every now and then');
  await page.locator(`tr[data-source="${source}"] button[data-action="interval"]`).click();
  const refusedInterval = await notice(page, 'error');
  check(/^400 /.test(refusedInterval) && /interval/i.test(refusedInterval), `bad interval: ${refusedInterval}`);
  await shot(page, 'bad-input');

  step('dead letters: the error, and a redrive');
  await page.getByRole('link', { name: 'Dead letters' }).click();
  const letter = page.locator('tr[data-letter]').first();
  await letter.waitFor();
  const letterText = await letter.textContent();
  check(/503|outage|unavailable/i.test(letterText), `dead letter shows its error: ${letterText}`);
  await shot(page, 'dead-letters');
  const letterId = await letter.getAttribute('data-letter');
  await letter.locator('button[data-action="redrive"]').click();
  const moved = await notice(page, 'info');
  check(/Moved 1 dead letter/.test(moved), `redrive notice: ${moved}`);
  await page.locator(`tr[data-letter="${letterId}"]`).waitFor({ state: 'detached', timeout: 15000 });

  step('conflicts: base, server and client side by side, resolved');
  await page.getByRole('link', { name: 'Conflicts' }).click();
  const card = page.locator('section[data-conflict]').first();
  await card.waitFor();
  const sides = await card.locator('.sides pre').allTextContents();
  check(sides.length === 3, 'three sides');
  check(sides[1].includes('crew-b') && sides[2].includes('crew-c'), `server and client sides: ${sides}`);
  check(await card.locator('tr.differs').count() >= 1, 'the differing field is marked');
  await shot(page, 'conflicts');
  // A custom resolution that breaks the entity's rules is refused with the reason.
  await card.locator('summary').click();
  await card.locator('textarea').fill('{"crew": "crew-z"}');
  await card.locator('button[data-action="custom"]').click();
  const refusedCustom = await notice(page, 'error');
  check(/^4\d\d /.test(refusedCustom) && /start is required/.test(refusedCustom), `custom without start: ${refusedCustom}`);
  await card.locator('button[data-action="client"]').click();
  const resolved = await notice(page, 'info');
  check(/Resolved conflict/.test(resolved), `resolve notice: ${resolved}`);
  await page.locator('section[data-conflict]').waitFor({ state: 'detached', timeout: 15000 });

  step('discrepancies: check and repair, the ids listed');
  await page.getByRole('link', { name: 'Discrepancies' }).click();
  await page.locator(`tr[data-source="${source}"] button[data-action="repair"]`).click();
  const checked = await notice(page, 'info');
  check(/3 missing/.test(checked) && /repairs queued/.test(checked), `check notice: ${checked}`);
  const report = page.locator('tr[data-report]').first();
  await report.waitFor();
  const reportText = await report.textContent();
  check(/missing 3/.test(reportText), `report lists the missing ids: ${reportText}`);
  await shot(page, 'discrepancies');

  step("a record's change trail");
  await page.getByRole('link', { name: 'Record trail' }).click();
  const [entity, id] = env('SYNCLINE_RECORD').split('/');
  await page.locator('input[name="entity"]').fill(entity);
  await page.locator('input[name="id"]').fill(id);
  await page.getByRole('button', { name: 'Show' }).click();
  await page.locator('#record').waitFor();
  const versions = await page.locator('tr[data-version]').count();
  check(versions >= 3, `the trail lists every version: ${versions}`);
  check((await page.locator('#record').textContent()).includes('crew-c'), 'the record now has the resolved content');
  await shot(page, 'trail');

  step('sign out forgets the token');
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.locator('#token').waitFor();
  check(await page.evaluate(() => sessionStorage.getItem('syncline.admin-token')) === null, 'token gone');

  step('a signed link signs in and leaves no token in the address or history');
  const linked = await newPage();
  await linked.page.goto(env('SYNCLINE_LINK'));
  await linked.page.locator(`tr[data-source="${source}"]`).waitFor();
  check(!linked.page.url().includes('token'), `address after the link: ${linked.page.url()}`);
  // Back goes to where the browser was before the link, not to the link.
  await linked.page.goBack().catch(() => null);
  check(!linked.page.url().includes('token='), `the previous history entry: ${linked.page.url()}`);
  await linked.context.close();

  step('a token that expires during the session sends the person back to sign-in');
  const short = await newPage();
  await short.page.goto(consoleUrl);
  await signIn(short.page, adminToken(6));
  await short.page.locator(`tr[data-source="${source}"]`).waitFor();
  const ending = short.page.locator('#sign-in-error', { hasText: /\S/ });
  await ending.waitFor({ timeout: 30000 });
  const ended = await ending.textContent();
  check(/expired|session ended/i.test(ended), `expiry message: ${ended}`);
  await short.context.close();

  const leaked = requests.filter((r) => /token=|eyJ/.test(r) && !r.startsWith(env('SYNCLINE_LINK').slice(0, 20)));
  check(leaked.filter((r) => !r.includes('#token=')).length === 0, `no token in a request URL: ${leaked}`);
  check(requests.every((r) => r.startsWith(url) || r.startsWith('data:')), `nothing fetched from elsewhere: ${requests.filter((r) => !r.startsWith(url))}`);
  check(problems.filter((p) => !/Failed to load resource: the server responded with a status of [45]\d\d/.test(p)).length === 0, `no script errors: ${problems}`);
  console.log(`ok: ${steps.length} steps, ${requests.length} requests`);
} catch (err) {
  console.error(`FAILED after: ${steps.join(' | ')}`);
  console.error(err.stack || String(err));
  console.error(`problems: ${problems.join('\n')}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
