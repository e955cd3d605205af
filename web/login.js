// The login form: trades the token for the session cookie, then goes back to the page that asked.

const form = document.getElementById('login');
const error = document.getElementById('login-error');

/** Only a path on this site: a crafted link must not send the browser elsewhere after login. */
function nextPage() {
  const next = new URLSearchParams(location.search).get('next');
  return next?.startsWith('/') && !next.startsWith('//') ? next : './';
}

form.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  error.textContent = '';
  const token = form.elements.token.value;
  try {
    const res = await fetch('api/v1/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({ token }),
      credentials: 'same-origin',
    });
    if (res.ok) {
      location.assign(nextPage());
      return;
    }
    const body = await res.json().catch(() => undefined);
    error.textContent = res.status === 401 ? 'Wrong token.' : (body?.error?.message ?? `The station answered ${res.status}.`);
  } catch (err) {
    error.textContent = `The station cannot be reached: ${err.message}`;
  }
});
