"""The chat page at / in a real headless browser (Debian's chromium + chromium-driver, python3-selenium): a
prompt is typed, the streamed reply appears, and the page shows its tokens/s."""
import os
import shutil
import sys
import unittest

from serve_util import Server, require_modules, skip, synthetic_model

require_modules("selenium")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
if not CHROMIUM or not os.path.exists(DRIVER):
    skip("chromium / chromium-driver not installed (Debian packages chromium chromium-driver)")


class ChatPageTest(unittest.TestCase):
    def test_prompt_typed_reply_streamed(self):
        model = synthetic_model("tiny", "--preset", "tiny")  # ChatML template, random weights
        with Server(["--model", model]) as server:
            options = webdriver.ChromeOptions()
            options.binary_location = CHROMIUM
            for argument in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]:
                options.add_argument(argument)
            service = Service(executable_path=DRIVER)
            browser = webdriver.Chrome(options=options, service=service)
            try:
                browser.get(server.url + "/")
                wait = WebDriverWait(browser, 60)
                wait.until(lambda b: b.find_element(By.ID, "model").text == "tiny")  # /v1/models answered
                prompt = browser.find_element(By.ID, "prompt")
                prompt.send_keys("Hello there", Keys.ENTER)
                # The reply's stats line gets id done-2 once the stream ended ([DONE]).
                stats = wait.until(expected_conditions.presence_of_element_located((By.ID, "done-2")))
                self.assertIn("tokens/s", stats.text)
                turns = browser.find_elements(By.CSS_SELECTOR, ".turn")
                self.assertEqual(turns[0].find_element(By.CSS_SELECTOR, ".text").text, "Hello there")
                reply = turns[1].find_element(By.CSS_SELECTOR, ".text").get_attribute("textContent")
                self.assertGreater(len(reply), 0)
                tokens = int(stats.text.split(" tokens,")[0])
                self.assertGreater(tokens, 0)
            finally:
                browser.quit()


if __name__ == "__main__":
    unittest.main(verbosity=2)
