// Chat templates: the Jinja template a tokenizer ships (tokenizer_config.json "chat_template"),
// rendered with @huggingface/jinja the way transformers' apply_chat_template does.
import { Template } from '@huggingface/jinja';

export interface ChatMessage {
  role: string;
  content: string;
}

export interface ChatOptions {
  /** Append the header that opens the assistant's turn (what generation continues from). */
  addGenerationPrompt: boolean;
  bosToken?: string;
  eosToken?: string;
}

/**
 * ChatML, the template transformers used as its default for tokenizers without one:
 *   <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n
 * Used only when the tokenizer has no template; its markers are plain text to most vocabularies.
 */
export const DEFAULT_CHAT_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
export const DEFAULT_CHAT_TEMPLATE_NAME = 'ChatML';

const compiled = new Map<string, Template>();

/** Renders `messages` with a Jinja chat template; errors name the template problem. */
export function renderChat(template: string, messages: ChatMessage[], opts: ChatOptions): string {
  for (const [i, m] of messages.entries()) {
    if (typeof m?.role !== 'string' || typeof m?.content !== 'string') {
      throw new Error(`renderChat: messages[${i}] expected {role: string, content: string}`);
    }
  }
  let t = compiled.get(template);
  if (!t) {
    try {
      t = new Template(template);
    } catch (err) {
      throw new Error(`chat template: cannot parse (${(err as Error).message})`);
    }
    compiled.set(template, t);
  }
  try {
    return t.render({
      messages,
      add_generation_prompt: opts.addGenerationPrompt,
      bos_token: opts.bosToken ?? '',
      eos_token: opts.eosToken ?? '',
    });
  } catch (err) {
    throw new Error(`chat template: cannot render (${(err as Error).message})`);
  }
}
