"""What the phone web app says, in the phone's language (``Accept-Language``).

The app's script fills in ``{name}``-style fields; it never builds HTML from these (it
sets ``textContent``). Every error code of the phone API (tests/data/phone_wire.json)
has a sentence here that says what happened and what to do, never the code itself.
"""

from __future__ import annotations

from flask_babel import gettext


def app_messages() -> dict[str, str]:
    """Every sentence the app's script may show, translated now."""
    return {
        # Screens
        "checking": gettext("Checking this phone…"),
        "signed_in_as": gettext("This phone signs in as {name} ({username})."),
        "request_title": gettext("Sign in to {client}?"),
        # A device's sign-in (RFC 8628: a TV, a command line shows a code).
        "device_title": gettext("A device wants to sign in as you to {client}"),
        "device_label": gettext("Device"),
        "computer_label": gettext("Computer"),
        "device_warning": gettext(
            "Approve only if you started this sign-in yourself, on a device in front of you"
            " that shows this code. If someone sent you this code or link (by e-mail, chat or"
            " phone) and asked you to enter it, deny: they are trying to get into your account."
        ),
        "device_prefilled": gettext(
            "A link put a device's code here. Tap Continue only if it is the code a device in"
            " front of you shows. Never enter a code someone sent you."
        ),
        "device_approved_title": gettext("Done: the device is signing in"),
        "device_approved_text": gettext("The device is signing you in to {client}."),
        "request_for": gettext("Set up this phone first, then you can answer this sign-in."),
        "invited": gettext("This invitation sets up this phone for {name} ({username})."),
        "invited_replaces": gettext(
            "This phone signs in as {name} now: setting it up with this invitation replaces that."
        ),
        "choose_number": gettext("Which number does the computer show?"),
        "choose_number_note": gettext("Tap the number on the computer's screen to approve."),
        "time_left": gettext("{time} left to answer"),
        "expired_now": gettext("Time is up: this sign-in code has expired."),
        "browser_at": gettext("{browser} at {ip}"),
        "location_unknown": gettext("Location unknown"),
        "started_at": gettext("Started {time}"),
        "login_hint": gettext("The site suggests the account {hint}."),
        "approved_title": gettext("Done: return to your computer"),
        "approved_text": gettext("The computer is signing you in to {client}."),
        "released_title": gettext("Given back: nothing was approved"),
        "released_text": gettext(
            "The computer shows its code again, for the phone of the person signing in."
        ),
        "denied_title": gettext("Denied: nobody was signed in"),
        "denied_text": gettext("{client} was not given access."),
        "wrong_number_title": gettext("Wrong number: the sign-in was denied"),
        "wrong_number_text": gettext(
            "That was not the number on the computer, so nobody was signed in. If you"
            " were signing in, start again on the computer."
        ),
        "different_network_title": gettext("Refused: this phone is not on the computer's network"),
        "different_network_text": gettext(
            "This site accepts sign-ins only from a phone on the same network as the"
            " computer, so nobody was signed in. If you are at that computer, connect this"
            " phone to its network (its Wi-Fi) and start again on the computer."
        ),
        "enrolled": gettext("This phone is set up. Scan a website's QR code to sign in."),
        "this_device": gettext("This phone"),
        "added_on": gettext("Added {date}"),
        "last_used": gettext("last used {date}"),
        "removed_on": gettext("Removed {date}"),
        "no_devices": gettext("No phones."),
        "remove": gettext("Remove"),
        "remove_named": gettext("Remove {name}"),
        "confirm_remove": gettext("Remove {name}? It will no longer be able to sign in."),
        "confirm_remove_this": gettext(
            "Remove this phone? It will no longer be able to sign in until you set it up again."
        ),
        "removed_other": gettext("{name} was removed."),
        "scanning": gettext("Point the camera at the QR code on the computer."),
        # Requests sites sent from their servers (OpenID CIBA), in the inbox (inbox.js)
        "inbox_item": gettext("{client} asks you to approve"),
        "inbox_opened_here": gettext("Opened on this phone"),
        "inbox_opened_elsewhere": gettext("Opened on another phone"),
        "backchannel_title": gettext("{client} asks for your approval"),
        "binding_label": gettext(
            "The site's message. Approve only if the site shows or says the same:"
        ),
        "backchannel_from": gettext("No browser: the site asked from its own server."),
        "backchannel_approved_title": gettext("Approved"),
        "backchannel_approved_text": gettext("{client} is told that you approved."),
        "backchannel_denied_text": gettext("{client} is told that you refused."),
        # Setting up a phone with another's approval (enrollment.js)
        "pending_left": gettext("{time} left to approve this phone"),
        "code_expired_now": gettext("Time is up: this code has expired."),
        "enrollment_denied": gettext("Your other phone refused this phone."),
        "enrollment_expired": gettext("The code expired: set up again."),
        "enter_enrollment_code": gettext("Type the code the new phone shows."),
        "asked_at": gettext("Asked {time}"),
        "enrollment_approved_title": gettext("{name} is set up."),
        "enrollment_approved_text": gettext(
            "It can sign in as you now. If you do not know it, remove it from the list of"
            " phones in this app."
        ),
        "enrollment_denied_title": gettext("The phone was refused."),
        "enrollment_denied_text": gettext("It was not set up and cannot sign in as you."),
        "enrollment_decided": gettext("This phone was already approved or refused."),
        # The proximity verdict (idp/qrlogin/proximity.py) in words about a new phone: the
        # server's own sentence speaks of a sign-in. Said first on the approving phone.
        "enrollment_same_network": gettext("The new phone is on the same network as this phone."),
        "enrollment_nearby": gettext(
            "The new phone is on another network in this phone's country. Approve only if you"
            " are holding it."
        ),
        "enrollment_different_network": gettext(
            "The new phone is on a different network than this phone. Approve only if you are"
            " holding it."
        ),
        "enrollment_different_country": gettext(
            "The new phone is in another country than this phone. Approve only if you are"
            " holding it."
        ),
        "enrollment_unknown": gettext("Where the new phone is cannot be compared with this phone."),
        "via_password": gettext("set up with a password"),
        "via_invitation": gettext("set up with an invitation"),
        "via_device": gettext("approved by {name}"),
        "via_this_device": gettext("approved by this phone"),
        "via_other_device": gettext("approved by another phone"),
        "storage_note": gettext(
            "Add this app to your home screen. Otherwise some browsers (Safari) delete this"
            " phone's key when the app is not opened for 7 days, and you will have to set it"
            " up again."
        ),
        # Errors a person can act on
        "network": gettext(
            "The sign-in service could not be reached. Check your connection and try again."
        ),
        "insecure": gettext(
            "This page must be opened over https: the camera and this phone's key work only"
            " on a secure connection."
        ),
        "unsupported": gettext(
            "This browser cannot keep a key safely (no Web Crypto or IndexedDB). Open this"
            " page in an up-to-date browser, outside private browsing."
        ),
        "no_camera": gettext("No camera was found. Type the code the computer shows instead."),
        "camera_denied": gettext(
            "The camera is not allowed. Allow it in the browser's settings, or type the code"
            " the computer shows instead."
        ),
        "camera_failed": gettext("The camera could not be started. Type the code instead."),
        "not_a_login_code": gettext("This QR code is not a sign-in code of this service."),
        "expired": gettext(
            "This sign-in code has expired. Get a new code on the computer and scan it again."
        ),
        "already_used": gettext(
            "This sign-in code was already used. Get a new code on the computer."
        ),
        "wrong_number": gettext(
            "That was not the number on the computer, so the sign-in was denied."
        ),
        "different_network": gettext(
            "This phone is not on the computer's network, which this site requires, so the"
            " sign-in was denied."
        ),
        "wrong_account": gettext(
            "This sign-in is for another account, not the one on this phone. Nothing was approved."
        ),
        "wrong_device": gettext("Another phone already scanned this code."),
        "unknown_code": gettext(
            "No sign-in is waiting for this code. Check the code on the computer and try again."
        ),
        "not_a_code": gettext(
            "That is not a sign-in code: it has 8 letters, like ACDE-FGHJ. Check it and try again."
        ),
        "invalid_credentials": gettext("The username or password is wrong."),
        "too_many": gettext("Too many attempts. Try again in {seconds} seconds."),
        "too_many_later": gettext("Too many attempts. Try again later."),
        "device_exists": gettext("This phone is already set up."),
        "invalid_invitation": gettext(
            "This invitation link was already used, has expired or is unknown. Ask for a new one."
        ),
        "password_enrollment_disabled": gettext(
            "Setting up a phone with a password is switched off here: ask your administrator"
            " for an invitation."
        ),
        "invalid_enrollment_code": gettext("That code is wrong or expired."),
        "invalid_proof": gettext(
            "This phone's request could not be verified. Check that the phone's clock is"
            " right, then try again."
        ),
        "device_removed": gettext(
            "This phone was removed, so it can no longer sign in. Set it up again to use it."
        ),
        "unavailable": gettext("The sign-in service is busy. Try again in a moment."),
        "refused": gettext("The sign-in service refused this request. Try again from the start."),
        "failed": gettext("Something went wrong. Try again."),
        "enter_code": gettext("Type the code the computer shows."),
    }
