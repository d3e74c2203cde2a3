// The official openai npm client against llm-server: streamed completions and
// chat, as an application would use them. Prints "openai-client ok" on success.
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.argv[2], apiKey: "unused" });
const fail = (msg) => { console.error("openai-client FAIL: " + msg); process.exit(1); };

const models = await client.models.list();
if (!models.data.length) fail("no models");

let text = "", chunks = 0, finish = null;
const s1 = await client.completions.create({ model: models.data[0].id, prompt: "Once upon a time", max_tokens: 16, temperature: 0, stream: true });
for await (const ch of s1) { chunks++; text += ch.choices[0]?.text ?? ""; finish = ch.choices[0]?.finish_reason ?? finish; }
if (chunks < 2 || !text.length || finish !== "length") fail(`completions: ${chunks} chunks, finish ${finish}, text ${JSON.stringify(text)}`);
const whole = await client.completions.create({ model: models.data[0].id, prompt: "Once upon a time", max_tokens: 16, temperature: 0 });
if (whole.choices[0].text !== text) fail(`streamed ${JSON.stringify(text)} != whole ${JSON.stringify(whole.choices[0].text)}`);

let chat = "", role = null, cchunks = 0;
const s2 = await client.chat.completions.create({ model: models.data[0].id, messages: [{ role: "user", content: "Tell me a story." }], max_tokens: 12, stream: true });
for await (const ch of s2) { cchunks++; role = role ?? ch.choices[0]?.delta?.role; chat += ch.choices[0]?.delta?.content ?? ""; }
if (cchunks < 2 || role !== "assistant" || !chat.length) fail(`chat: ${cchunks} chunks, role ${role}`);
const c = await client.chat.completions.create({ model: models.data[0].id, messages: [{ role: "user", content: "Hi" }], max_tokens: 4 });
if (c.choices[0].message.role !== "assistant" || c.usage.completion_tokens > 4) fail("chat: bad non-streamed answer");
console.log("openai-client ok");
