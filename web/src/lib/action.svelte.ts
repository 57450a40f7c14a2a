// What a page does when a form is sent or a button pressed: mark it busy (the button
// disables and says so), clear the last failure, run, and keep the failure's text to
// show by the form. Every page did this by hand, with a flag and a message each.
import { errorText } from '$lib/api/client';

export class Action<A extends unknown[] = []> {
	busy = $state(false);
	/** The last run's failure, for people ('' = none). */
	error = $state('');
	readonly #fn: (...args: A) => Promise<unknown>;
	readonly #describe: (e: unknown) => string;

	/**
	 * fn does the work and whatever follows it (a refresh, closing a dialog); describe
	 * turns a failure into the text shown (errorText unless a page says more, and the
	 * place to keep what a failure carries, such as a 409's list).
	 */
	constructor(fn: (...args: A) => Promise<unknown>, describe: (e: unknown) => string = errorText) {
		this.#fn = fn;
		this.#describe = describe;
	}

	/** run resolves to whether fn succeeded; it never rejects. */
	run = async (...args: A): Promise<boolean> => {
		this.busy = true;
		this.error = '';
		try {
			await this.#fn(...args);
			return true;
		} catch (e) {
			this.error = this.#describe(e);
			return false;
		} finally {
			this.busy = false;
		}
	};

	/** submit is run as a form's onsubmit: the browser does not send the form itself. */
	submit = (e: SubmitEvent, ...args: A): Promise<boolean> => {
		e.preventDefault();
		return this.run(...args);
	};

	/** reset forgets the last failure (a dialog opened again starts clean). */
	reset = () => {
		this.error = '';
	};
}
