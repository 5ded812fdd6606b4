#!/usr/bin/env node
/**
 * Evaluates template.yaml's IAM policies offline with a real IAM policy
 * evaluator, @cloud-copilot/iam-simulate (a test-only tool, AGPL-3.0; nothing
 * of it ships).
 *
 * Input: the concrete policies infra/local/sam/policies.py wrote from the
 * translated template, one document per (region, parameter set). For each
 * document three groups of checks run:
 *
 *   table   every line of cases.txt (allow/deny expectations, see its header)
 *   calls   every AWS call the functions' code makes (calls.json, and the
 *           calls recorded during `make test`, pkg/testsupport/awscalls)
 *           must be allowed to the function's role ("*": to every
 *           function's); resource "table" is the stack's table, "parameter"
 *           {prefix}/shop/{leaf}[:3], "none" is "*", "raw" is taken as it is
 *           (a name that is no ARN fails). With a KMS key, SSM's own
 *           kms:Decrypt / kms:Encrypt (kms:ViaService = SSM) must be allowed too
 *   unused  every (statement, action, resource pattern) of every principal's
 *           Allow statements must be used by an allowed case or call
 *
 * Usage:
 *
 *   node infra/local/iam/check.mjs [--modules DIR] [--policies FILE]
 *       [--cases FILE] [--calls FILE ...]
 *   node infra/local/iam/check.mjs --self-test [--template FILE] [--python PY]
 *
 * --modules   the node_modules that holds iam-simulate
 *             (default .cache/iam/node_modules; `npm ci` of this folder's lock)
 * --policies  policies.py's output (default .cache/sam/policies.json)
 * --cases     the case table (default infra/local/iam/cases.txt)
 * --calls     a JSON file of calls; repeatable. Default: infra/local/iam/calls.json
 *             and .cache/scan/aws-calls.json if it exists.
 * --self-test applies one-line mutations to a copy of the template (MUTATIONS),
 *             runs translate.py, policies.py and the check on each (in
 *             DIR/../selftest, DIR being --modules), and fails unless the
 *             unmutated template passes and every mutation fails.
 * --template  the template the self-test mutates (default template.yaml)
 * --python    the Python with the SAM translator (default .cache/venv/bin/python)
 *
 * Exit status 1 on any failure, 2 on bad input.
 */

/** What --help prints; the header of this file has the details. */
const USAGE = [
  'usage: node infra/local/iam/check.mjs [--modules DIR] [--policies FILE] [--cases FILE] [--calls FILE ...]',
  '       node infra/local/iam/check.mjs --self-test [--template FILE] [--python PY] [--calls FILE ...]',
  'Evaluates the IAM policies of the translated template with iam-simulate: the case table,',
  'the recorded and reviewed AWS calls, unused grants (see the header of this file).',
].join('\n')


import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const ROOT = path.resolve(HERE, '..', '..', '..')

const FUNCTIONS = ['ScheduledRefreshFunction', 'RefreshApiFunction']
const PRINCIPALS = [...FUNCTIONS, 'Consumer']

// Another region of the same partition, for "not another region" cases.
const OTHER_REGION = { 'us-east-1': 'us-west-2', 'cn-north-1': 'cn-northwest-1' }
// The other partition's URL suffix, for "not the other partition's host" cases.
const OTHER_URL_SUFFIX = { aws: 'amazonaws.com.cn', 'aws-cn': 'amazonaws.com' }
const OTHER_ACCOUNT = '210987654321'

/** A problem with the inputs (not a policy failure): exit status 2. */
class InputError extends Error {}

// ------------------------------------------------------------------ arguments

function parseArgs(argv) {
  const a = {
    modules: path.join(ROOT, '.cache', 'iam', 'node_modules'),
    policies: path.join(ROOT, '.cache', 'sam', 'policies.json'),
    cases: path.join(HERE, 'cases.txt'),
    calls: [],
    selfTest: false,
    template: path.join(ROOT, 'template.yaml'),
    python: path.join(ROOT, '.cache', 'venv', 'bin', 'python'),
  }
  const valued = { '--modules': 'modules', '--policies': 'policies', '--cases': 'cases', '--template': 'template', '--python': 'python' }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '--self-test') a.selfTest = true
    else if (arg === '--calls') a.calls.push(argv[++i])
    else if (arg === '--help' || arg === '-h') {
      console.log(USAGE)
      process.exit(0)
    }
    else if (valued[arg] && i + 1 < argv.length) a[valued[arg]] = argv[++i]
    else throw new InputError(`unknown argument ${arg} (see the comment at the top of ${path.relative(ROOT, fileURLToPath(import.meta.url))})`)
  }
  for (const k of ['modules', 'policies', 'cases', 'template', 'python']) a[k] = path.resolve(a[k])
  a.calls = a.calls.map((f) => path.resolve(f))
  if (a.calls.length === 0) {
    a.calls.push(path.join(HERE, 'calls.json'))
    const recorded = path.join(ROOT, '.cache', 'scan', 'aws-calls.json')
    if (fs.existsSync(recorded)) a.calls.push(recorded)
  }
  return a
}

/** Imports iam-simulate's ESM entry point from the node_modules folder dir. */
async function loadSimulator(dir) {
  const pkgDir = path.join(dir, '@cloud-copilot', 'iam-simulate')
  const pkgFile = path.join(pkgDir, 'package.json')
  if (!fs.existsSync(pkgFile)) {
    throw new InputError(`${pkgFile} missing: install infra/local/iam's lock into ${path.dirname(dir)} (npm ci)`)
  }
  const pkg = JSON.parse(fs.readFileSync(pkgFile, 'utf8'))
  const mod = await import(pathToFileURL(path.join(pkgDir, pkg.exports['.'].import)).href)
  return { runSimulation: mod.runSimulation, version: pkg.version }
}

// ------------------------------------------------------------------ inputs

/**
 * Parses cases.txt into {where, text, expect, sets, principals, action,
 * resource, context}; sets is null for "every set".
 */
function parseCases(file) {
  const out = []
  const lines = fs.readFileSync(file, 'utf8').split('\n')
  lines.forEach((raw, i) => {
    const where = `${path.relative(ROOT, file)}:${i + 1}`
    const text = raw.replace(/(^|\s)#.*$/, '').trim()
    if (!text) return
    const [head, who, action, resource, ...ctx] = text.split(/\s+/)
    const m = /^(allow|deny)(?:\[([A-Za-z0-9_,-]+)\])?$/.exec(head)
    if (!m || !resource) throw new InputError(`${where}: expected "allow|deny[SETS] PRINCIPALS ACTION RESOURCE [KEY=VALUE...]": ${raw}`)
    const principals = who === '*' ? PRINCIPALS : who.split(',')
    for (const p of principals) {
      if (!PRINCIPALS.includes(p)) throw new InputError(`${where}: unknown principal ${p} (known: ${PRINCIPALS.join(', ')}, *)`)
    }
    if (!/^[a-z0-9-]+:[A-Za-z0-9*]+$/.test(action)) throw new InputError(`${where}: not an action: ${action}`)
    const context = {}
    for (const kv of ctx) {
      const eq = kv.indexOf('=')
      if (eq < 1) throw new InputError(`${where}: expected KEY=VALUE, got ${kv}`)
      // A multi-valued key (dynamodb:LeadingKeys) takes its values comma-separated.
      const key = kv.slice(0, eq)
      context[key] = MULTI_VALUED.has(key) ? kv.slice(eq + 1).split(',') : kv.slice(eq + 1)
    }
    out.push({ where, text: text.replace(/\s+/g, ' '), expect: m[1], sets: m[2] ? m[2].split(',') : null, principals, action, resource, context })
  })
  return out
}

/**
 * Reads the call files into a list of {function, action, resource, leaf,
 * selector, name, count, from}, merging repeats (their counts add up).
 */
function readCalls(files) {
  const merged = new Map()
  for (const file of files) {
    if (!fs.existsSync(file)) throw new InputError(`calls file ${file} missing`)
    let list
    try {
      list = JSON.parse(fs.readFileSync(file, 'utf8'))
    } catch (e) {
      throw new InputError(`${file}: ${e.message}`)
    }
    if (!Array.isArray(list)) throw new InputError(`${file}: not a JSON array`)
    list.forEach((c, i) => {
      const where = `${path.relative(ROOT, file)}[${i}]`
      if (!['*', ...FUNCTIONS].includes(c.function)) throw new InputError(`${where}: function must be *, ${FUNCTIONS.join(' or ')}: ${JSON.stringify(c)}`)
      if (typeof c.action !== 'string' || !c.action.includes(':')) throw new InputError(`${where}: no action: ${JSON.stringify(c)}`)
      const call = { function: c.function, action: c.action, resource: c.resource, leaf: c.leaf, selector: !!c.selector, key_prefix: c.key_prefix, name: c.name, count: c.count ?? 1, from: where, files: [file] }
      const key = JSON.stringify([call.function, call.action, call.resource, call.leaf, call.selector, call.key_prefix, call.name])
      if (merged.has(key)) {
        merged.get(key).count += call.count
        merged.get(key).files.push(file)
      } else merged.set(key, call)
    })
  }
  return [...merged.values()]
}

/** Whether two calls are the same kind of call, whatever the function. */
function sameKind(a, b) {
  return a.action === b.action && a.resource === b.resource && a.leaf === b.leaf && a.selector === b.selector && a.key_prefix === b.key_prefix && a.name === b.name
}

/** Whether a call of function a is covered by one of function b ("*" covers all). */
function sameFunction(a, b) {
  return a.function === b.function || a.function === '*' || b.function === '*'
}

/**
 * The calls that only the later files (the recorded ones) name and the
 * first (the reviewed list, calls.json) does not, for the same function or
 * for "*". They are still evaluated; this only tells a reviewer that the list
 * is behind the code.
 */
function unreviewed(calls, reviewedFile) {
  const reviewed = calls.filter((c) => c.files.includes(reviewedFile))
  return calls.filter((c) => !c.files.includes(reviewedFile) && !reviewed.some((r) => sameKind(c, r) && (r.function === '*' || r.function === c.function)))
}

/**
 * The reviewed calls that no recorded call matches: the code may no longer
 * make them, and the grants only they need may be stale. Empty when no
 * recorded file was given.
 */
function unseen(calls, reviewedFile) {
  const recorded = calls.filter((c) => c.files.some((f) => f !== reviewedFile))
  if (recorded.length === 0) return []
  return calls.filter((c) => c.files.includes(reviewedFile) && !recorded.some((r) => sameKind(c, r) && sameFunction(c, r)))
}

// ------------------------------------------------------------------ rendering

/** The placeholder values of one document's facts. */
function placeholders(facts) {
  const other = OTHER_REGION[facts.region]
  if (!other) throw new InputError(`no other region known for ${facts.region} (OTHER_REGION in check.mjs)`)
  const values = {
    p: facts.partition,
    region: facts.region,
    account: facts.account,
    urlsuffix: facts.urlSuffix,
    otherregion: other,
    otheraccount: OTHER_ACCOUNT,
    otherurlsuffix: OTHER_URL_SUFFIX[facts.partition],
    prefix: facts.prefix,
    table: facts.table,
    api: facts.api,
    apiid: facts.apiId,
    kmskey: facts.kmsKeyArn ?? facts.testKmsKeyArn,
  }
  for (const [logical, arn] of Object.entries(facts.logGroups)) values[`log:${logical}`] = arn
  return values
}

/** Replaces {placeholders} in s; an unknown one is an input error. */
function substitute(s, values, where) {
  return s.replace(/\{([^{}]+)\}/g, (_, name) => {
    if (!(name in values)) throw new InputError(`${where}: unknown placeholder {${name}}`)
    return values[name]
  })
}

/** A case's resource as a full ARN (or "*") in the document's region. */
function renderResource(resource, action, values, where) {
  const r = substitute(resource, values, where)
  if (r === '*' || r.startsWith('arn:')) return r
  const service = action.split(':')[0]
  return `arn:${values.p}:${service}:${values.region}:${values.account}:${r}`
}

/** Condition keys whose values are lists. */
const MULTI_VALUED = new Set(['dynamodb:LeadingKeys'])

/**
 * The requests one recorded call stands for in a document: [{principal,
 * action, resource, context, label}]. With a KMS key every SSM read or write
 * of a SecureString also makes SSM call KMS on the caller's behalf.
 */
function renderCall(call, facts) {
  let resource
  if (call.resource === 'table') resource = facts.table
  else if (call.resource === 'parameter') {
    if (typeof call.leaf !== 'string' || !call.leaf) throw new InputError(`${call.from}: a parameter call needs a leaf`)
    resource = `arn:${facts.partition}:ssm:${facts.region}:${facts.account}:parameter${facts.prefix}/shop/${call.leaf}${call.selector ? ':3' : ''}`
  } else if (call.resource === 'raw') resource = String(call.name)
  else if (call.resource === 'none') resource = '*'
  else throw new InputError(`${call.from}: resource must be table, parameter, raw or none: ${call.resource}`)
  // A DynamoDB item operation names its item's partition key: the check
  // passes it on as dynamodb:LeadingKeys (app "shop" of the recorded kind).
  const context = call.key_prefix ? { 'dynamodb:LeadingKeys': [`${call.key_prefix}shop`] } : {}
  const reqs = [{ action: call.action, resource, context, label: call.action }]
  if (facts.kmsKeyArn && call.resource === 'parameter') {
    const kmsAction = { 'ssm:GetParameter': 'kms:Decrypt', 'ssm:GetParameters': 'kms:Decrypt', 'ssm:PutParameter': 'kms:Encrypt' }[call.action]
    if (kmsAction) {
      reqs.push({
        action: kmsAction,
        resource: facts.kmsKeyArn,
        context: { 'kms:ViaService': `ssm.${facts.region}.${facts.urlSuffix}` },
        label: `${kmsAction} (SSM's, for ${call.action})`,
      })
    }
  }
  const principals = call.function === '*' ? FUNCTIONS : [call.function]
  return principals.flatMap((principal) => reqs.map((r) => ({ principal, ...r })))
}

/** The account an ARN belongs to (the stack's for "*" and account-less ARNs). */
function accountOf(arn, facts) {
  return (arn !== '*' && arn.split(':')[4]) || facts.account
}

// ------------------------------------------------------------------ evaluation

const asList = (v) => (v === undefined ? [] : Array.isArray(v) ? v : [v])

/** A principal's display name: its role, or ConsumerPolicy for consumers. */
const principalLabel = (pr) => (pr.kind === 'function' ? pr.role : pr.policies.map((p) => p.name).join('+'))

/** A policy's display name, e.g. "RefreshApiRole/wxtoken-refresh-api" or "ConsumerPolicy". */
const policyLabel = (pr, policyName) => (pr.kind === 'function' ? `${pr.role}/${policyName}` : policyName)

/** A statement's name: its Sid, or its position. */
const statementName = (statement, index) => (statement.Sid ? `Sid ${statement.Sid}` : `statement ${index + 1}`)

/**
 * The policy document and statement index of one of iam-simulate's statement
 * analyses (its statement is a parsed object; toJSON() gives the original).
 */
function locate(pr, st) {
  const policy = pr.policies.find((p) => p.name === st.policyId)
  const json = JSON.stringify(typeof st.statement.toJSON === 'function' ? st.statement.toJSON() : st.statement)
  const statements = asList(policy.document.Statement)
  const index = statements.findIndex((s) => JSON.stringify(s) === json)
  if (index < 0) throw new Error(`cannot find iam-simulate's statement ${json} in ${policy.name}`)
  return { policy, index, statement: statements[index] }
}

/**
 * Evaluates one request for a principal of a document. Returns {allowed,
 * error, grants: [unit keys of the statements that allowed it], why: a
 * sentence on the outcome}.
 */
async function evaluate(sim, doc, principal, action, resource, context) {
  const pr = doc.principals[principal]
  const simulation = buildSimulation(doc, pr, action, resource, context)
  // The self-test evaluates the same requests against mostly the same
  // policies many times: equal inputs give equal results.
  const key = JSON.stringify([principal, pr.kind, pr.role, simulation])
  if (!evaluations.has(key)) evaluations.set(key, await evaluateOnce(sim, pr, principal, simulation))
  return evaluations.get(key)
}

/** Results of evaluate() by their complete input. */
const evaluations = new Map()

/** The iam-simulate input for one request of a principal. */
function buildSimulation(doc, pr, action, resource, context) {
  const simulation = {
    request: { principal: pr.arn, action, resource: { resource, accountId: accountOf(resource, doc.facts) }, contextVariables: context },
    identityPolicies: pr.policies.map((p) => ({ name: p.name, policy: p.document })),
    serviceControlPolicies: [],
    resourceControlPolicies: [],
  }
  // A KMS key's own policy must trust the account before IAM policies count.
  if (action.startsWith('kms:')) simulation.resourcePolicy = doc.resourcePolicies.kms
  return simulation
}

async function evaluateOnce(sim, pr, principal, simulation) {
  const action = simulation.request.action
  const r = await sim.runSimulation(simulation, {})
  if (r.resultType === 'error') {
    return { allowed: false, error: `iam-simulate rejected the request: ${r.errors.message} ${JSON.stringify(r.errors)}` }
  }
  const results = r.resultType === 'single' ? [r.result] : r.results
  const ignored = [...new Set(results.flatMap((x) => x.ignoredContextKeys ?? []))]
  if (ignored.length) return { allowed: false, error: `context key(s) ${ignored.join(', ')} do not apply to ${action}` }

  const allowed = r.overallResult === 'Allowed'
  const grants = []
  const allowedBy = []
  const nearMisses = []
  for (const res of results) {
    const ia = res.analysis?.identityAnalysis
    if (!ia) continue
    for (const st of ia.allowStatements ?? []) {
      const { policy, index, statement } = locate(pr, st)
      const actions = asList(st.explain.actions).filter((a) => a.matches).map((a) => a.action)
      const resources = asList(st.explain.resources).filter((x) => x.matches).map((x) => x.resource)
      for (const a of actions) for (const x of resources) grants.push(unitKey(principal, policy.name, index, a, x))
      allowedBy.push(`${policyLabel(pr, policy.name)} ${statementName(statement, index)} (${resources.join(', ')})`)
    }
    // Allow statements that name the action but not this resource or condition.
    for (const st of ia.unmatchedStatements ?? []) {
      const { policy, index, statement } = locate(pr, st)
      if (!st.actionMatch || statement.Effect !== 'Allow') continue
      const name = `${policyLabel(pr, policy.name)} ${statementName(statement, index)}`
      if (!st.resourceMatch) nearMisses.push(`${name} allows it on ${asList(statement.Resource).join(', ')} only`)
      else if (st.conditionMatch !== 'Match') nearMisses.push(`${name}'s condition ${JSON.stringify(statement.Condition)} does not hold`)
    }
  }
  let why
  if (allowed) why = `allowed by ${allowedBy.join('; ')}`
  else if (allowedBy.length) why = `denied although ${allowedBy.join('; ')} allows it (${r.overallResult}: a resource policy or the account boundary)`
  else if (nearMisses.length) why = `denied: ${nearMisses.join('; ')}`
  else why = `denied: no statement of ${principalLabel(pr)} allows it`
  return { allowed, grants, why }
}

/** The key of one grant: principal, policy, statement, action, resource pattern. */
const unitKey = (principal, policy, index, action, resource) => JSON.stringify([principal, policy, index, action, resource])

/** Every Allow grant of a document: key -> description; and unsupported statements. */
function grantUnits(doc) {
  const units = new Map()
  const problems = []
  for (const [principal, pr] of Object.entries(doc.principals)) {
    for (const policy of pr.policies) {
      asList(policy.document.Statement).forEach((st, index) => {
        if (st.Effect !== 'Allow') return
        const name = `${principal}: ${policyLabel(pr, policy.name)} ${statementName(st, index)}`
        if (st.NotAction || st.NotResource) {
          problems.push(`${name} uses NotAction/NotResource: too broad to check (and to review)`)
          return
        }
        for (const a of asList(st.Action)) {
          for (const x of asList(st.Resource)) units.set(unitKey(principal, policy.name, index, a, x), `${name} grants ${a} on ${x}`)
        }
      })
    }
  }
  return { units, problems }
}

/**
 * Runs the three groups for every document. Returns [{name, ok, summary,
 * failures: [string]}] in a fixed order.
 */
async function runChecks(sim, docs, cases, calls) {
  const knownSets = new Set(docs.map((d) => d.set))
  for (const c of cases) {
    for (const s of c.sets ?? []) if (!knownSets.has(s)) throw new InputError(`${c.where}: unknown parameter set ${s} (known: ${[...knownSets].join(', ')})`)
  }
  const groups = []
  for (const doc of docs) {
    const where = `in ${doc.region} (${doc.set})`
    const values = placeholders(doc.facts)
    const used = new Set()

    // table
    const failures = []
    let lines = 0
    let requests = 0
    for (const c of cases) {
      if (c.sets && !c.sets.includes(doc.set)) continue
      lines++
      const resource = renderResource(c.resource, c.action, values, c.where)
      const context = Object.fromEntries(
        Object.entries(c.context).map(([k, v]) => [k, Array.isArray(v) ? v.map((x) => substitute(x, values, c.where)) : substitute(v, values, c.where)]),
      )
      for (const principal of c.principals) {
        requests++
        const r = await evaluate(sim, doc, principal, c.action, resource, context)
        const req = `${principal} ${c.action} on ${resource}${Object.keys(context).length ? ' with ' + JSON.stringify(context) : ''}`
        if (r.error) failures.push(`${c.where}: ${req}: ${r.error}`)
        else if (r.allowed !== (c.expect === 'allow')) failures.push(`${c.where}: expected ${c.expect}: ${req} is ${r.why}`)
        else if (r.allowed) r.grants.forEach((g) => used.add(g))
      }
    }
    groups.push({ name: `table ${where}`, ok: failures.length === 0, summary: `table: ${lines} cases (${requests} requests) ${where}`, failures })

    // calls
    const callFailures = []
    let callRequests = 0
    for (const call of calls) {
      for (const req of renderCall(call, doc.facts)) {
        callRequests++
        const what = `${req.principal}: ${req.label} on ${req.resource}`
        // A raw name that is no ARN names nothing the stack grants.
        if (call.resource === 'raw' && !req.resource.startsWith('arn:')) {
          callFailures.push(`${what} is denied: "${req.resource}" is not of the form {prefix}/{app}/{leaf}, and no policy grants it (${call.from})`)
          continue
        }
        const r = await evaluate(sim, doc, req.principal, req.action, req.resource, req.context)
        if (r.error) callFailures.push(`${what}: ${r.error} (${call.from})`)
        else if (!r.allowed) callFailures.push(`${what} is ${r.why} (${call.from})`)
        else r.grants.forEach((g) => used.add(g))
      }
    }
    groups.push({ name: `calls ${where}`, ok: callFailures.length === 0, summary: `calls: ${calls.length} calls (${callRequests} requests) ${where}`, failures: callFailures })

    // unused grants
    const { units, problems } = grantUnits(doc)
    const unused = [...units].filter(([k]) => !used.has(k)).map(([, d]) => `${d}, but no allowed case or call uses it`)
    const uf = [...problems, ...unused]
    groups.push({ name: `unused ${where}`, ok: uf.length === 0, summary: `unused: ${units.size} grants ${where}${uf.length ? '' : ', all used'}`, failures: uf })
  }
  return groups
}

/** Prints groups as "ok   ..." / "FAIL ..." lines with their failures. */
function printGroups(groups) {
  for (const g of groups) {
    console.log(`${g.ok ? 'ok  ' : 'FAIL'} ${g.summary}`)
    for (const f of g.failures) console.log(`       ${f}`)
  }
}

// ------------------------------------------------------------------ self-test

/**
 * One-line edits of template.yaml, each widening or narrowing a grant, that
 * the check must catch. block: the resource whose lines are searched; from:
 * the whole line, trimmed, which must occur exactly once in the block; to:
 * its replacement at the same indentation ("\n" adds lines at that indentation).
 */
const PARTITION_SSM = 'arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${ParameterPrefix}'
const MUTATIONS = [
  { label: 'scheduled PutParameter on the whole prefix', block: 'ScheduledRefreshRole',
    from: `- !Sub "${PARTITION_SSM}/*/access_token"`, to: `- !Sub "${PARTITION_SSM}/*"` },
  { label: 'scheduled role without dynamodb:Scan', block: 'ScheduledRefreshRole',
    from: '- dynamodb:Scan', to: '# - dynamodb:Scan (mutated away)' },
  { label: 'API role with dynamodb:DeleteItem', block: 'RefreshApiRole',
    from: 'Action: dynamodb:GetItem', to: 'Action: [dynamodb:GetItem, dynamodb:DeleteItem]' },
  { label: 'API role may write registrations (LeadingKeys widened)', block: 'RefreshApiRole',
    from: '- state#*', to: '- "*"' },
  { label: 'scheduled role writes without the LeadingKeys condition', block: 'ScheduledRefreshRole',
    from: 'ForAllValues:StringLike:', to: 'ForAllValues:StringNotLike:' },
  { label: 'consumer may POST any route (force-refresh)', block: 'ConsumerPolicy',
    from: '- !Sub arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${Api}/*/POST/v1/apps/*/refresh',
    to: '- !Sub arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${Api}/*/POST/v1/apps/*' },
  { label: 'API role kms:ViaService only if present', block: 'RefreshApiRole',
    from: 'StringEquals:', to: 'StringEqualsIfExists:' },
  { label: 'consumer kms:ViaService as ForAllValues (vacuous without the key)', block: 'ConsumerPolicy',
    from: 'StringEquals:', to: 'ForAllValues:StringEquals:' },
  { label: 'consumer kms:Decrypt on every key', block: 'ConsumerPolicy',
    from: 'Resource: !Ref KmsKeyArn', to: 'Resource: "*"' },
  { label: 'API role reads every secret ("*")', block: 'RefreshApiRole',
    from: `- !Sub ${PARTITION_SSM}/*/secret`, to: '- "*"' },
  { label: 'scheduled role reads secrets outside the prefix', block: 'ScheduledRefreshRole',
    from: `- !Sub ${PARTITION_SSM}/*/secret`, to: '- !Sub arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/*/secret' },
  { label: 'API role without the version selector', block: 'RefreshApiRole',
    from: `- !Sub ${PARTITION_SSM}/*/access_token:*`, to: '# version selector mutated away' },
  { label: 'consumer reads secrets too', block: 'ConsumerPolicy',
    from: `- !Sub ${PARTITION_SSM}/*/access_token`, to: `- !Sub ${PARTITION_SSM}/*` },
  { label: "scheduled role logs to the API's group", block: 'ScheduledRefreshRole',
    from: 'Resource: !GetAtt ScheduledRefreshLogGroup.Arn', to: 'Resource: !GetAtt RefreshApiLogGroup.Arn' },
  { label: 'API PublishTokens with a literal aws partition', block: 'RefreshApiRole',
    from: `- !Sub "${PARTITION_SSM}/*/access_token"`,
    to: '- !Sub "arn:aws:ssm:${AWS::Region}:${AWS::AccountId}:parameter${ParameterPrefix}/*/access_token"' },
  { label: 'scheduled role with an unused dynamodb:DescribeTable', block: 'ScheduledRefreshRole',
    from: '- dynamodb:Scan', to: '- dynamodb:Scan\n- dynamodb:DescribeTable' },
]

/** Applies one mutation to the template text; throws if its line is not found exactly once. */
function mutate(text, m) {
  const lines = text.split('\n')
  const starts = lines.flatMap((l, i) => (l === `  ${m.block}:` ? [i] : []))
  if (starts.length !== 1) throw new InputError(`mutation "${m.label}": resource ${m.block} found ${starts.length} times in the template`)
  let end = starts[0] + 1
  while (end < lines.length && !(lines[end].trim() && lines[end].search(/\S/) <= 2)) end++
  const hits = []
  for (let i = starts[0] + 1; i < end; i++) if (lines[i].trim() === m.from) hits.push(i)
  if (hits.length !== 1) throw new InputError(`mutation "${m.label}": line "${m.from}" found ${hits.length} times in ${m.block} (expected once): update MUTATIONS in check.mjs`)
  const indent = lines[hits[0]].match(/^\s*/)[0]
  lines[hits[0]] = m.to.split('\n').map((l) => indent + l).join('\n')
  return lines.join('\n')
}

/** Runs a command; resolves to its combined output, rejects on a non-zero exit. */
function run(cmd, args) {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    p.stdout.on('data', (d) => (out += d))
    p.stderr.on('data', (d) => (out += d))
    p.on('error', reject)
    p.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${path.basename(cmd)} ${args.join(' ')} exited ${code}:\n${out}`))))
  })
}

/**
 * Runs translate.py and policies.py on DIR/template.yaml for every dir
 * (policies.py --batch: one Python process per CPU, each importing the SAM
 * translator once), and returns each dir's policy documents.
 */
async function policiesFor(args, dirs) {
  const n = Math.max(1, Math.min(os.cpus().length, dirs.length))
  const chunks = Array.from({ length: n }, (_, k) => dirs.filter((_, i) => i % n === k))
  await Promise.all(chunks.map((chunk) => run(args.python, [path.join(ROOT, 'infra/local/sam/policies.py'), '--batch', ...chunk])))
  return dirs.map((d) => JSON.parse(fs.readFileSync(path.join(d, 'policies.json'), 'utf8')).documents)
}

async function selfTest(sim, args, cases, calls) {
  const started = Date.now()
  // Beside node_modules: .cache/iam/selftest/NN/ (template, translations, policies).
  const base = path.join(path.dirname(args.modules), 'selftest')
  fs.rmSync(base, { recursive: true, force: true })
  const original = fs.readFileSync(args.template, 'utf8')
  // Every mutation is applied first, so a stale one fails before any work.
  const variants = [{ label: 'unmutated template', text: original }, ...MUTATIONS.map((m) => ({ label: m.label, text: mutate(original, m) }))]
  const dirs = variants.map((v, i) => {
    const dir = path.join(base, String(i).padStart(2, '0'))
    fs.mkdirSync(dir, { recursive: true })
    fs.writeFileSync(path.join(dir, 'template.yaml'), v.text)
    return dir
  })
  const docs = await policiesFor(args, dirs)
  const translated = Date.now()
  let bad = 0
  for (const [i, v] of variants.entries()) {
    const groups = await runChecks(sim, docs[i], cases, calls)
    const failed = groups.filter((g) => !g.ok)
    if (i === 0) {
      if (failed.length) {
        bad++
        console.log('FAIL unmutated template does not pass:')
        printGroups(failed)
      } else console.log(`ok   unmutated template passes (${groups.length} groups)`)
      continue
    }
    if (failed.length) {
      const kinds = [...new Set(failed.map((g) => g.name.split(' ')[0]))].join('+')
      const where = [...new Set(failed.map((g) => g.name.replace(/^\w+ in /, '')))].join(', ')
      console.log(`caught ${v.label}: ${kinds} in ${where}`)
      console.log(`       e.g. ${failed[0].failures[0]}`)
    } else {
      bad++
      console.log(`MISSED ${v.label}`)
    }
  }
  console.log(`       (${variants.length} templates in ${base}: translate.py + policies.py ${((translated - started) / 1000).toFixed(1)} s, checks ${secondsSince(translated)} s)`)
  return bad
}

// ------------------------------------------------------------------ main

const secondsSince = (t) => ((Date.now() - t) / 1000).toFixed(1)

async function main() {
  const started = Date.now()
  const args = parseArgs(process.argv.slice(2))
  const sim = await loadSimulator(path.resolve(args.modules))
  const cases = parseCases(args.cases)
  const calls = readCalls(args.calls)
  if (args.selfTest) {
    const bad = await selfTest(sim, args, cases, calls)
    const secs = secondsSince(started)
    console.log(bad ? `FAIL iam self-test: ${bad} problem(s) (${secs} s)` : `ok   iam self-test: ${MUTATIONS.length} mutations caught, unmutated template passes (${secs} s)`)
    return bad ? 1 : 0
  }
  if (!fs.existsSync(args.policies)) throw new InputError(`${args.policies} missing: run infra/local/sam/translate.py and policies.py first`)
  const docs = JSON.parse(fs.readFileSync(args.policies, 'utf8')).documents
  console.log(`iam-simulate ${sim.version}: ${cases.length} case lines, ${calls.length} calls from ${args.calls.map((f) => path.relative(ROOT, f)).join(', ')}`)
  const groups = await runChecks(sim, docs, cases, calls)
  printGroups(groups)
  const reviewedFile = args.calls[0]
  for (const c of unseen(calls, reviewedFile)) {
    console.log(`note reviewed call in ${path.relative(ROOT, args.calls[0])} that no recorded call made (still evaluated; if the code no longer makes it, remove it and any grant only it needs): ${c.function} ${c.action} ${c.resource}${c.key_prefix ? ' ' + c.key_prefix : ''}${c.leaf ? ' ' + c.leaf : ''}${c.selector ? ':N' : ''} (${c.from})`)
  }
  for (const c of unreviewed(calls, reviewedFile)) {
    console.log(`note recorded call not in ${path.relative(ROOT, args.calls[0])} (evaluated all the same; add it there): ${c.function} ${c.action} ${c.resource}${c.key_prefix ? ' ' + c.key_prefix : ''}${c.leaf ? ' ' + c.leaf : ''}${c.selector ? ':N' : ''}${c.name ? ' ' + c.name : ''} (${c.from})`)
  }
  const failed = groups.filter((g) => !g.ok).length
  const secs = secondsSince(started)
  console.log(failed ? `FAIL iam: ${failed} of ${groups.length} groups failed (${secs} s)` : `ok   iam: ${groups.length} groups passed for ${docs.length} region/parameter sets (${secs} s)`)
  return failed ? 1 : 0
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e instanceof InputError ? `check.mjs: ${e.message}` : e)
    process.exit(2)
  },
)
